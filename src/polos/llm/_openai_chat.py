"""The OpenAI Chat Completions API (``POST /v1/chat/completions``), through ``openai``.

Also the adapter for every OpenAI-compatible server (Ollama, vLLM, Groq, Together,
Fireworks): they speak this API, sometimes with a ``reasoning_content`` (or
``reasoning``) field for the model's thinking, which is captured when present.

The helpers at the top (argument parsing, strict-schema detection, splitting
``LLMRequest.extra``) are shared with the Responses adapter.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, Literal

from polos.errors import ConfigurationError

from ._errors import RetryPolicy, call_with_retries, stream_with_retries
from ._types import LLMRequest, LLMResponse, Message, StreamEvent, ToolCall, Usage

if TYPE_CHECKING:
    from openai import AsyncOpenAI
    from openai.types.chat import ChatCompletion, ChatCompletionChunk
    from openai.types.completion_usage import CompletionUsage

__all__ = ["OpenAIChatProvider"]

MaxTokensParam = Literal["max_completion_tokens", "max_tokens"]

_RAW_ARGUMENTS_KEY = "_raw_arguments"


def parse_arguments(raw: str | None) -> dict[str, Any]:
    """A tool call's JSON arguments as a dict.

    Arguments that are not a JSON object (a model can emit broken JSON) are kept under
    ``_raw_arguments`` instead of being dropped, so the agent loop can show the model
    what it sent.
    """
    if not raw or not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return {_RAW_ARGUMENTS_KEY: raw}
    return value if isinstance(value, dict) else {_RAW_ARGUMENTS_KEY: raw}


def is_strict_schema(schema: Any) -> bool:
    """Whether OpenAI's ``strict`` mode accepts ``schema``: every object lists all its
    properties as required and forbids additional ones.

    Strict mode guarantees the shape but rejects (HTTP 400) any other schema, so it is
    only asked for when the schema already qualifies.
    """
    if not isinstance(schema, dict):
        return True
    properties = schema.get("properties")
    if schema.get("type") == "object" or isinstance(properties, dict):
        properties = properties if isinstance(properties, dict) else {}
        if schema.get("additionalProperties") is not False:
            return False
        if set(schema.get("required") or []) != set(properties):
            return False
    children: list[Any] = list((properties or {}).values()) if isinstance(properties, dict) else []
    for key in ("items", "not"):
        children.append(schema.get(key))
    for key in ("anyOf", "oneOf", "allOf", "prefixItems"):
        children.extend(schema.get(key) or [])
    for key in ("$defs", "definitions"):
        children.extend((schema.get(key) or {}).values())
    return all(is_strict_schema(child) for child in children)


_PARAMETERS: dict[Any, frozenset[str]] = {}


def fit_arguments(method: Callable[..., Any], params: dict[str, Any]) -> dict[str, Any]:
    """``params`` as keyword arguments of the client ``method``: the entries it does not
    know (server-specific ones like vLLM's ``top_k``, or fields a client version dropped
    from its signature, like ``temperature`` in ``anthropic`` 2) move into
    ``extra_body``, since the client refuses unknown keyword arguments."""
    key = getattr(method, "__func__", method)
    names = _PARAMETERS.get(key)
    if names is None:
        names = frozenset(inspect.signature(method).parameters)
        _PARAMETERS[key] = names
    known = {k: v for k, v in params.items() if k in names and k != "extra_body"}
    body = {k: v for k, v in params.items() if k not in names}
    body.update(params.get("extra_body") or {})
    if body:
        known["extra_body"] = body
    return known


def normalise_finish_reason(reason: str | None) -> str | None:
    """Finish reasons in the Chat Completions vocabulary (``stop``, ``tool_calls``,
    ``length``, ``content_filter``), whatever the provider called them."""
    return {
        "end_turn": "stop",
        "stop_sequence": "stop",
        "tool_use": "tool_calls",
        "max_tokens": "length",
        "max_output_tokens": "length",
    }.get(reason or "", reason)


def make_openai_client(
    *, base_url: str | None, api_key: str | None, timeout: float | None, provider: str
) -> AsyncOpenAI:
    """An ``AsyncOpenAI`` that never retries by itself (our loop does).

    ``api_key``/``base_url`` of None let the client read ``OPENAI_API_KEY`` /
    ``OPENAI_BASE_URL``; a missing key becomes a :class:`ConfigurationError`.
    """
    import openai  # imported here: the library is slow to import and only needed now

    options: dict[str, Any] = {"max_retries": 0, "base_url": base_url, "api_key": api_key}
    if timeout is not None:
        # The client takes None as "no timeout at all", so only pass a real one.
        options["timeout"] = timeout
    try:
        return openai.AsyncOpenAI(**options)
    except openai.OpenAIError as exc:
        raise ConfigurationError(
            f"cannot create the {provider!r} LLM provider: no API key. Pass api_key=... "
            f"or set OPENAI_API_KEY. ({exc})"
        ) from None


def _chat_messages(request: LLMRequest) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    if request.system:
        messages.append({"role": "system", "content": request.system})
    for message in request.messages:
        messages.append(_chat_message(message))
    return messages


def _chat_message(message: Message) -> dict[str, Any]:
    if message.role == "tool":
        return {
            "role": "tool",
            "tool_call_id": message.tool_call_id or "",
            "content": message.content,
        }
    if message.role != "assistant":
        return {"role": message.role, "content": message.content}
    # Reasoning is not sent back: most compatible servers reject or ignore the field.
    out: dict[str, Any] = {
        "role": "assistant",
        # The API wants null, not "", for an assistant turn that only calls tools.
        "content": message.content if message.content or not message.tool_calls else None,
    }
    if message.tool_calls:
        out["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
            }
            for call in message.tool_calls
        ]
    return out


def _chat_usage(usage: CompletionUsage | None) -> Usage:
    if usage is None:
        return Usage()
    prompt_details = usage.prompt_tokens_details
    completion_details = usage.completion_tokens_details
    return Usage(
        input_tokens=usage.prompt_tokens or 0,
        output_tokens=usage.completion_tokens or 0,
        cache_read_tokens=(prompt_details.cached_tokens or 0) if prompt_details else 0,
        reasoning_tokens=(completion_details.reasoning_tokens or 0) if completion_details else 0,
    )


def _reasoning_of(obj: Any) -> str | None:
    """The thinking an OpenAI-compatible server adds to a message or delta (DeepSeek and
    vLLM say ``reasoning_content``, Ollama and others ``reasoning``)."""
    for field in ("reasoning_content", "reasoning"):
        value = getattr(obj, field, None)
        if isinstance(value, str) and value:
            return value
    return None


def _chat_response(completion: ChatCompletion) -> LLMResponse:
    if not completion.choices:
        return LLMResponse(
            usage=_chat_usage(completion.usage), model=completion.model, response_id=completion.id
        )
    choice = completion.choices[0]
    message = choice.message
    calls = []
    for call in message.tool_calls or []:
        function = getattr(call, "function", None)  # custom (non-function) tools have none
        if function is not None:
            calls.append(
                ToolCall(
                    id=call.id, name=function.name, arguments=parse_arguments(function.arguments)
                )
            )
    return LLMResponse(
        text=message.content or "",
        tool_calls=calls,
        reasoning=_reasoning_of(message),
        usage=_chat_usage(completion.usage),
        model=completion.model,
        finish_reason=choice.finish_reason,
        response_id=completion.id,
    )


class _ChunkAccumulator:
    """Rebuilds the whole answer from streamed chunks."""

    def __init__(self) -> None:
        self.text: list[str] = []
        self.reasoning: list[str] = []
        self.calls: dict[int, dict[str, Any]] = {}
        self.finish_reason: str | None = None
        self.usage: CompletionUsage | None = None
        self.model = ""
        self.response_id: str | None = None

    def add(self, chunk: ChatCompletionChunk) -> list[StreamEvent]:
        """Take in one chunk; returns the delta events it carries."""
        events: list[StreamEvent] = []
        self.model = chunk.model or self.model
        self.response_id = chunk.id or self.response_id
        if chunk.usage is not None:
            self.usage = chunk.usage
        for choice in chunk.choices[:1]:
            delta = choice.delta
            reasoning = _reasoning_of(delta)
            if reasoning:
                self.reasoning.append(reasoning)
                events.append(StreamEvent(type="reasoning_delta", text=reasoning))
            if delta.content:
                self.text.append(delta.content)
                events.append(StreamEvent(type="text_delta", text=delta.content))
            for part in delta.tool_calls or []:
                slot = self.calls.setdefault(part.index, {"id": "", "name": "", "arguments": []})
                if part.id:
                    slot["id"] = part.id
                if part.function is not None:
                    if part.function.name:
                        slot["name"] = part.function.name
                    if part.function.arguments:
                        slot["arguments"].append(part.function.arguments)
            if choice.finish_reason:
                self.finish_reason = choice.finish_reason
        return events

    def tool_calls(self) -> list[ToolCall]:
        """The calls assembled from their streamed pieces, in index order."""
        return [
            ToolCall(
                id=slot["id"] or f"call_{index}",
                name=slot["name"],
                arguments=parse_arguments("".join(slot["arguments"])),
            )
            for index, slot in sorted(self.calls.items())
        ]

    def response(self) -> LLMResponse:
        """The whole answer."""
        return LLMResponse(
            text="".join(self.text),
            tool_calls=self.tool_calls(),
            reasoning="".join(self.reasoning) or None,
            usage=_chat_usage(self.usage),
            model=self.model,
            finish_reason=self.finish_reason,
            response_id=self.response_id,
        )


class OpenAIChatProvider:
    """A model behind the Chat Completions API: OpenAI or any compatible server.

    Args:
        name: the provider name reported in errors (``openai``, ``ollama``, ``groq``...).
        base_url: the API root (ending in ``/v1``); None: ``OPENAI_BASE_URL`` or OpenAI.
        api_key: None: ``OPENAI_API_KEY``.
        timeout: seconds per HTTP request; None: the client's default.
        max_retries: retries of retryable errors (429, 5xx, timeouts) after the first try.
        retry_base_delay: the first backoff in seconds (doubled each retry).
        max_tokens_param: how ``max_output_tokens`` is sent: OpenAI wants
            ``max_completion_tokens``; some compatible servers only know ``max_tokens``.
        stream_usage: ask for usage in streams (``stream_options.include_usage``).
        client: an ``openai.AsyncOpenAI`` to use instead of building one (it should have
            ``max_retries=0``).
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
        max_tokens_param: MaxTokensParam = "max_completion_tokens",
        stream_usage: bool = True,
        client: AsyncOpenAI | None = None,
    ) -> None:
        self.name = name
        self.retry_policy = RetryPolicy(max_retries=max_retries, base_delay=retry_base_delay)
        self.max_tokens_param = max_tokens_param
        self.stream_usage = stream_usage
        self.client = client or make_openai_client(
            base_url=base_url, api_key=api_key, timeout=timeout, provider=name
        )

    def build_params(self, request: LLMRequest) -> dict[str, Any]:
        """The request body for ``request`` (``extra`` merged in, not yet split into
        arguments and ``extra_body``)."""
        params: dict[str, Any] = {"model": request.model, "messages": _chat_messages(request)}
        if request.tools:
            params["tools"] = [
                {
                    "type": "function",
                    "function": {
                        "name": tool.name,
                        "description": tool.description,
                        "parameters": tool.parameters,
                    },
                }
                for tool in request.tools
            ]
        if request.temperature is not None:
            params["temperature"] = request.temperature
        if request.max_output_tokens is not None:
            params[self.max_tokens_param] = request.max_output_tokens
        if request.output_schema is not None:
            params["response_format"] = {
                "type": "json_schema",
                "json_schema": {
                    "name": request.output_schema_name,
                    "schema": request.output_schema,
                    "strict": is_strict_schema(request.output_schema),
                },
            }
        params.update(request.extra)
        return params

    async def generate(self, request: LLMRequest) -> LLMResponse:
        """One complete answer (retried on retryable errors)."""
        create = self.client.chat.completions.create
        params = fit_arguments(create, self.build_params(request))

        async def attempt() -> LLMResponse:
            completion: ChatCompletion = await create(**params)
            return _chat_response(completion)

        return await call_with_retries(attempt, provider=self.name, policy=self.retry_policy)

    def stream(self, request: LLMRequest) -> AsyncIterator[StreamEvent]:
        """Text and reasoning deltas, then one ``tool_call`` per call, then ``done``."""
        params = self.build_params(request)
        params["stream"] = True
        if self.stream_usage and "stream_options" not in params:
            params["stream_options"] = {"include_usage": True}
        params = fit_arguments(self.client.chat.completions.create, params)
        return stream_with_retries(
            lambda: self._stream_once(params), provider=self.name, policy=self.retry_policy
        )

    async def _stream_once(self, params: dict[str, Any]) -> AsyncGenerator[StreamEvent, None]:
        accumulator = _ChunkAccumulator()
        stream = await self.client.chat.completions.create(**params)
        async with stream:
            async for chunk in stream:
                for event in accumulator.add(chunk):
                    yield event
        response = accumulator.response()
        for call in response.tool_calls:
            yield StreamEvent(type="tool_call", tool_call=call)
        yield StreamEvent(type="done", response=response)

    async def aclose(self) -> None:
        """Close the HTTP connections of the client."""
        await self.client.close()
