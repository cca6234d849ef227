"""The OpenAI Responses API (``POST /v1/responses``), through ``openai``.

Conversations are sent whole every time (no ``previous_response_id``): the agent loop
owns the history, so a replayed step sends exactly what the original did.

Reasoning: the model's reasoning summary (or, for models that return it, its reasoning
text) becomes ``LLMResponse.reasoning``. When the response carries the reasoning item's
``encrypted_content`` (ask with ``extra={"include": ["reasoning.encrypted_content"]}``),
the item id and that content are kept in ``reasoning_signature`` (tagged
``openai-reasoning:``) and the reasoning item is sent back on the next turn, as OpenAI
recommends for stateless (``store=False``) conversations.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator
from typing import TYPE_CHECKING, Any

from ._errors import RetryPolicy, call_with_retries, error_from_type, stream_with_retries
from ._openai_chat import (
    fit_arguments,
    is_strict_schema,
    make_openai_client,
    normalise_finish_reason,
    parse_arguments,
)
from ._types import LLMRequest, LLMResponse, Message, StreamEvent, ToolCall, Usage

if TYPE_CHECKING:
    from openai import AsyncOpenAI
    from openai.types.responses import Response, ResponseStreamEvent, ResponseUsage

__all__ = ["REASONING_TAG", "OpenAIResponsesProvider"]

REASONING_TAG = "openai-reasoning:"
"""Prefix of a ``reasoning_signature`` that holds a Responses reasoning item (other
providers skip such signatures, and this adapter only sends back its own)."""


def _reasoning_item(message: Message) -> dict[str, Any] | None:
    signature = message.reasoning_signature
    if not signature or not signature.startswith(REASONING_TAG):
        return None
    try:
        saved = json.loads(signature[len(REASONING_TAG) :])
    except ValueError:
        return None
    if not isinstance(saved, dict) or not saved.get("id"):
        return None
    item: dict[str, Any] = {"type": "reasoning", "id": saved["id"], "summary": []}
    if message.reasoning:
        item["summary"] = [{"type": "summary_text", "text": message.reasoning}]
    if saved.get("encrypted_content"):
        item["encrypted_content"] = saved["encrypted_content"]
    return item


def _input_items(request: LLMRequest) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for message in request.messages:
        if message.role == "tool":
            items.append(
                {
                    "type": "function_call_output",
                    "call_id": message.tool_call_id or "",
                    "output": message.content,
                }
            )
        elif message.role == "assistant":
            reasoning = _reasoning_item(message)
            if reasoning is not None:
                items.append(reasoning)
            if message.content:
                items.append({"type": "message", "role": "assistant", "content": message.content})
            # No item ``id`` on the calls: an id ties a call to the reasoning item that
            # produced it, and the API refuses the call without that item.
            items.extend(
                {
                    "type": "function_call",
                    "call_id": call.id,
                    "name": call.name,
                    "arguments": json.dumps(call.arguments),
                }
                for call in message.tool_calls
            )
        else:
            items.append({"type": "message", "role": message.role, "content": message.content})
    return items


def _usage(usage: ResponseUsage | None) -> Usage:
    if usage is None:
        return Usage()
    input_details = usage.input_tokens_details
    output_details = usage.output_tokens_details
    return Usage(
        input_tokens=usage.input_tokens or 0,
        output_tokens=usage.output_tokens or 0,
        cache_read_tokens=(getattr(input_details, "cached_tokens", 0) or 0),
        cache_creation_tokens=(getattr(input_details, "cache_write_tokens", 0) or 0),
        reasoning_tokens=(getattr(output_details, "reasoning_tokens", 0) or 0),
    )


def _response(response: Response) -> LLMResponse:
    text: list[str] = []
    calls: list[ToolCall] = []
    reasoning: list[str] = []
    signature: str | None = None
    for item in response.output:
        if item.type == "message":
            for part in item.content:
                if part.type == "output_text":
                    text.append(part.text)
                elif part.type == "refusal":
                    text.append(part.refusal)
        elif item.type == "function_call":
            calls.append(
                ToolCall(id=item.call_id, name=item.name, arguments=parse_arguments(item.arguments))
            )
        elif item.type == "reasoning":
            summary = [part.text for part in item.summary]
            # Summaries are what OpenAI models return; open-weight models behind the
            # same API return the raw reasoning text instead.
            reasoning.extend(summary or [part.text for part in item.content or []])
            if item.encrypted_content:
                saved = {"id": item.id, "encrypted_content": item.encrypted_content}
                signature = REASONING_TAG + json.dumps(saved)
    finish_reason = "tool_calls" if calls else "stop"
    if response.status == "incomplete":
        details = response.incomplete_details
        finish_reason = normalise_finish_reason(details.reason if details else None) or "length"
    return LLMResponse(
        text="".join(text),
        tool_calls=calls,
        reasoning="\n\n".join(part for part in reasoning if part) or None,
        reasoning_signature=signature,
        usage=_usage(response.usage),
        model=response.model,
        finish_reason=finish_reason,
        response_id=response.id,
    )


class OpenAIResponsesProvider:
    """A model behind the Responses API (OpenAI; also vLLM and Ollama, which serve it).

    Arguments are those of :class:`~polos.llm._openai_chat.OpenAIChatProvider`, without
    ``max_tokens_param`` (``max_output_tokens`` is sent as such).
    """

    def __init__(
        self,
        *,
        name: str = "openai",
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float | None = None,
        max_retries: int = 3,
        retry_base_delay: float = 0.5,
        client: AsyncOpenAI | None = None,
    ) -> None:
        self.name = name
        self.retry_policy = RetryPolicy(max_retries=max_retries, base_delay=retry_base_delay)
        self.client = client or make_openai_client(
            base_url=base_url, api_key=api_key, timeout=timeout, provider=name
        )

    def build_params(self, request: LLMRequest) -> dict[str, Any]:
        """The request body for ``request`` (``extra`` merged in)."""
        params: dict[str, Any] = {"model": request.model, "input": _input_items(request)}
        if request.system:
            params["instructions"] = request.system
        if request.tools:
            params["tools"] = [
                {
                    "type": "function",
                    "name": tool.name,
                    "description": tool.description,
                    "parameters": tool.parameters,
                    # The API makes function tools strict unless told otherwise, and
                    # strict mode refuses schemas with optional properties.
                    "strict": is_strict_schema(tool.parameters),
                }
                for tool in request.tools
            ]
        if request.temperature is not None:
            params["temperature"] = request.temperature
        if request.max_output_tokens is not None:
            params["max_output_tokens"] = request.max_output_tokens
        if request.output_schema is not None:
            params["text"] = {
                "format": {
                    "type": "json_schema",
                    "name": request.output_schema_name,
                    "schema": request.output_schema,
                    "strict": is_strict_schema(request.output_schema),
                }
            }
        params.update(request.extra)
        return params

    async def generate(self, request: LLMRequest) -> LLMResponse:
        """One complete answer (retried on retryable errors)."""
        create = self.client.responses.create
        params = fit_arguments(create, self.build_params(request))

        async def attempt() -> LLMResponse:
            response: Response = await create(**params)
            if response.status == "failed" and response.error is not None:
                raise self._failure(response)
            return _response(response)

        return await call_with_retries(attempt, provider=self.name, policy=self.retry_policy)

    def stream(self, request: LLMRequest) -> AsyncIterator[StreamEvent]:
        """Text and reasoning-summary deltas, a ``tool_call`` as each call completes,
        then ``done`` with the response of the ``response.completed`` event."""
        params = self.build_params(request)
        params["stream"] = True
        params = fit_arguments(self.client.responses.create, params)
        return stream_with_retries(
            lambda: self._stream_once(params), provider=self.name, policy=self.retry_policy
        )

    def _failure(self, response: Response) -> Exception:
        error = response.error
        message = f"{self.name}: {error.message if error else 'the response failed'}"
        code = str(error.code) if error else None
        return error_from_type(message, code, code, provider=self.name, status=None)

    async def _stream_once(self, params: dict[str, Any]) -> AsyncGenerator[StreamEvent, None]:
        stream = await self.client.responses.create(**params)
        final: Response | None = None
        async with stream:
            event: ResponseStreamEvent
            async for event in stream:
                if event.type == "response.output_text.delta":
                    yield StreamEvent(type="text_delta", text=event.delta)
                elif event.type in (
                    "response.reasoning_summary_text.delta",
                    "response.reasoning_text.delta",
                ):
                    yield StreamEvent(type="reasoning_delta", text=event.delta)
                elif event.type == "response.output_item.done":
                    item = event.item
                    if item.type == "function_call":
                        call = ToolCall(
                            id=item.call_id,
                            name=item.name,
                            arguments=parse_arguments(item.arguments),
                        )
                        yield StreamEvent(type="tool_call", tool_call=call)
                elif event.type in ("response.completed", "response.incomplete"):
                    final = event.response
                elif event.type == "response.failed":
                    raise self._failure(event.response)
                elif event.type == "error":
                    raise error_from_type(
                        f"{self.name}: {event.message}",
                        event.code,
                        event.code,
                        provider=self.name,
                        status=None,
                    )
        if final is None:
            raise error_from_type(
                f"{self.name}: the stream ended before response.completed",
                "server_error",
                None,
                provider=self.name,
                status=None,
            )
        yield StreamEvent(type="done", response=_response(final))

    async def aclose(self) -> None:
        """Close the HTTP connections of the client."""
        await self.client.close()
