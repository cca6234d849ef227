"""The Anthropic Messages API (``POST /v1/messages``), through ``anthropic``.

* The system prompt goes in the top-level ``system`` field; ``system`` messages found in
  the conversation are appended to it.
* Tool results become ``tool_result`` blocks of a ``user`` turn; consecutive results
  share one turn, as the API requires all results of a turn to come together.
* Structured output uses the API's native ``output_config.format`` (``json_schema``),
  the schema adapted by ``anthropic.transform_schema`` to the subset the API accepts.
* Thinking: ``thinking`` blocks become ``LLMResponse.reasoning`` and their signature
  ``reasoning_signature``; both are sent back as a ``thinking`` block with the assistant
  turn, as the API requires while tools are used with thinking on. When a turn has
  several thinking (or redacted thinking) blocks, the exact blocks are kept in the
  signature (tagged ``anthropic-blocks:``) so that they go back unmodified.
* Usage: ``input_tokens`` counts every prompt token, as OpenAI does (Anthropic's
  uncached, cache-read and cache-write counts summed), so totals compare across providers.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator
from typing import TYPE_CHECKING, Any

from polos.errors import ConfigurationError

from ._errors import RetryPolicy, call_with_retries, stream_with_retries
from ._openai_chat import fit_arguments, normalise_finish_reason
from ._types import LLMRequest, LLMResponse, Message, StreamEvent, ToolCall, Usage

if TYPE_CHECKING:
    from anthropic import AsyncAnthropic
    from anthropic.types import Message as AnthropicMessage
    from anthropic.types import Usage as AnthropicUsage

__all__ = ["BLOCKS_TAG", "DEFAULT_MAX_TOKENS", "AnthropicProvider"]

DEFAULT_MAX_TOKENS = 4096
"""``max_tokens`` sent when the request has no ``max_output_tokens`` (the API requires one)."""

BLOCKS_TAG = "anthropic-blocks:"
"""Prefix of a ``reasoning_signature`` that holds several thinking blocks as JSON."""

_FOREIGN_TAGS = ("openai-reasoning:",)


def _thinking_blocks(message: Message) -> list[dict[str, Any]]:
    signature = message.reasoning_signature
    if not signature or signature.startswith(_FOREIGN_TAGS):
        # Thinking without its signature (or another provider's) cannot be sent back.
        return []
    if signature.startswith(BLOCKS_TAG):
        try:
            blocks = json.loads(signature[len(BLOCKS_TAG) :])
        except ValueError:
            return []
        return [block for block in blocks if isinstance(block, dict)]
    return [{"type": "thinking", "thinking": message.reasoning or "", "signature": signature}]


def _assistant_blocks(message: Message) -> list[dict[str, Any]]:
    blocks = _thinking_blocks(message)
    if message.content:
        blocks.append({"type": "text", "text": message.content})
    blocks.extend(
        {"type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments}
        for call in message.tool_calls
    )
    return blocks


def _conversation(request: LLMRequest) -> tuple[str | None, list[dict[str, Any]]]:
    """(system prompt, messages) in the Messages API's shape."""
    system = [request.system] if request.system else []
    turns: list[dict[str, Any]] = []

    def add(role: str, blocks: list[dict[str, Any]]) -> None:
        if not blocks:
            return  # the API refuses empty turns
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})

    for message in request.messages:
        if message.role == "system":
            system.append(message.content)
        elif message.role == "assistant":
            add("assistant", _assistant_blocks(message))
        elif message.role == "tool":
            result = {
                "type": "tool_result",
                "tool_use_id": message.tool_call_id or "",
                "content": message.content,
            }
            add("user", [result])
        elif message.content:
            add("user", [{"type": "text", "text": message.content}])
    # A one-text-block turn is sent as a plain string: the usual, shortest form.
    for turn in turns:
        content = turn["content"]
        if len(content) == 1 and content[0]["type"] == "text":
            turn["content"] = content[0]["text"]
    return ("\n\n".join(part for part in system if part) or None), turns


def _usage(usage: AnthropicUsage) -> Usage:
    cache_read = usage.cache_read_input_tokens or 0
    cache_creation = usage.cache_creation_input_tokens or 0
    # Newer API field: read defensively so older client versions still work.
    details = getattr(usage, "output_tokens_details", None)
    return Usage(
        input_tokens=(usage.input_tokens or 0) + cache_read + cache_creation,
        output_tokens=usage.output_tokens or 0,
        cache_read_tokens=cache_read,
        cache_creation_tokens=cache_creation,
        reasoning_tokens=getattr(details, "thinking_tokens", 0) or 0,
    )


def _response(message: AnthropicMessage) -> LLMResponse:
    text: list[str] = []
    calls: list[ToolCall] = []
    thinking: list[dict[str, Any]] = []
    for block in message.content:
        if block.type == "text":
            text.append(block.text)
        elif block.type == "tool_use":
            calls.append(ToolCall(id=block.id, name=block.name, arguments=dict(block.input)))
        elif block.type == "thinking":
            thinking.append(
                {"type": "thinking", "thinking": block.thinking, "signature": block.signature}
            )
        elif block.type == "redacted_thinking":
            thinking.append({"type": "redacted_thinking", "data": block.data})
    reasoning = "\n\n".join(b["thinking"] for b in thinking if b["type"] == "thinking") or None
    signature: str | None = None
    if len(thinking) == 1 and thinking[0]["type"] == "thinking":
        signature = thinking[0]["signature"] or None
    elif thinking:
        signature = BLOCKS_TAG + json.dumps(thinking)
    return LLMResponse(
        text="".join(text),
        tool_calls=calls,
        reasoning=reasoning,
        reasoning_signature=signature,
        usage=_usage(message.usage),
        model=message.model,
        finish_reason=normalise_finish_reason(message.stop_reason),
        response_id=message.id,
    )


def make_anthropic_client(
    *, base_url: str | None, api_key: str | None, timeout: float | None
) -> AsyncAnthropic:
    """An ``AsyncAnthropic`` that never retries by itself (our loop does).

    ``api_key``/``base_url`` of None let the client read ``ANTHROPIC_API_KEY`` /
    ``ANTHROPIC_BASE_URL`` (and its other credential sources); no credential at all is a
    :class:`ConfigurationError` now rather than a ``TypeError`` at the first call.
    """
    import anthropic  # imported here: the library takes seconds to import

    options: dict[str, Any] = {"max_retries": 0, "base_url": base_url, "api_key": api_key}
    if timeout is not None:
        options["timeout"] = timeout
    try:
        client = anthropic.AsyncAnthropic(**options)
    except anthropic.AnthropicError as exc:  # e.g. CredentialsError: a missing profile file
        raise ConfigurationError(
            f"cannot create the 'anthropic' LLM provider: {exc} Pass api_key=... or set "
            "ANTHROPIC_API_KEY."
        ) from None
    # ``credentials`` (profiles, workload identity) exists only in recent client versions.
    if (
        client.api_key is None
        and client.auth_token is None
        and not getattr(client, "credentials", None)
    ):
        raise ConfigurationError(
            "cannot create the 'anthropic' LLM provider: no API key. Pass api_key=... or "
            "set ANTHROPIC_API_KEY."
        )
    return client


class AnthropicProvider:
    """A Claude model behind the Messages API.

    Args:
        base_url: the API root (without ``/v1``); None: ``ANTHROPIC_BASE_URL`` or Anthropic.
        api_key: None: ``ANTHROPIC_API_KEY``.
        timeout: seconds per HTTP request; None: the client's default.
        max_retries: retries of retryable errors (429, 5xx, 529, timeouts).
        retry_base_delay: the first backoff in seconds (doubled each retry).
        client: an ``anthropic.AsyncAnthropic`` to use instead of building one.
    """

    def __init__(
        self,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float | None = None,
        max_retries: int = 3,
        retry_base_delay: float = 0.5,
        client: AsyncAnthropic | None = None,
    ) -> None:
        self.name = "anthropic"
        self.retry_policy = RetryPolicy(max_retries=max_retries, base_delay=retry_base_delay)
        self.client = client or make_anthropic_client(
            base_url=base_url, api_key=api_key, timeout=timeout
        )

    def build_params(self, request: LLMRequest) -> dict[str, Any]:
        """The request body for ``request`` (``extra`` merged in)."""
        import anthropic

        system, messages = _conversation(request)
        params: dict[str, Any] = {"model": request.model, "messages": messages}
        if system:
            params["system"] = system
        max_tokens = request.max_output_tokens
        if max_tokens is None:
            max_tokens = DEFAULT_MAX_TOKENS
            budget = (request.extra.get("thinking") or {}).get("budget_tokens")
            if isinstance(budget, int) and budget >= max_tokens:
                # Thinking counts against max_tokens, which must exceed the budget.
                max_tokens = budget + DEFAULT_MAX_TOKENS
        params["max_tokens"] = max_tokens
        if request.tools:
            params["tools"] = [
                {
                    "name": tool.name,
                    "description": tool.description,
                    "input_schema": tool.parameters,
                }
                for tool in request.tools
            ]
        if request.temperature is not None:
            params["temperature"] = request.temperature
        if request.output_schema is not None:
            try:
                schema = anthropic.transform_schema(request.output_schema)
            except (ValueError, TypeError):
                schema = request.output_schema
            params["output_config"] = {"format": {"type": "json_schema", "schema": schema}}
        extra = dict(request.extra)
        if isinstance(extra.get("output_config"), dict) and "output_config" in params:
            # e.g. ``{"effort": "low"}`` from extra, next to our ``format``.
            extra["output_config"] = {**extra["output_config"], **params["output_config"]}
        params.update(extra)
        return params

    async def generate(self, request: LLMRequest) -> LLMResponse:
        """One complete answer (retried on retryable errors)."""
        create = self.client.messages.create
        params = fit_arguments(create, self.build_params(request))

        async def attempt() -> LLMResponse:
            message: AnthropicMessage = await create(**params)
            return _response(message)

        return await call_with_retries(attempt, provider=self.name, policy=self.retry_policy)

    def stream(self, request: LLMRequest) -> AsyncIterator[StreamEvent]:
        """Text and thinking deltas, a ``tool_call`` as each ``tool_use`` block ends, then
        ``done`` with the accumulated message."""
        params = fit_arguments(self.client.messages.stream, self.build_params(request))
        return stream_with_retries(
            lambda: self._stream_once(params), provider=self.name, policy=self.retry_policy
        )

    async def _stream_once(self, params: dict[str, Any]) -> AsyncGenerator[StreamEvent, None]:
        async with self.client.messages.stream(**params) as stream:
            async for event in stream:
                if event.type == "text":
                    yield StreamEvent(type="text_delta", text=event.text)
                elif event.type == "thinking":
                    yield StreamEvent(type="reasoning_delta", text=event.thinking)
                elif event.type == "content_block_stop" and event.content_block.type == "tool_use":
                    block = event.content_block
                    call = ToolCall(id=block.id, name=block.name, arguments=dict(block.input))
                    yield StreamEvent(type="tool_call", tool_call=call)
            final = await stream.get_final_message()
        yield StreamEvent(type="done", response=_response(final))

    async def aclose(self) -> None:
        """Close the HTTP connections of the client."""
        await self.client.close()
