"""Provider-neutral LLM types: what the agent loop sends, receives and records.

Every provider adapter converts these to and from its own API; the agent loop and the
step log only ever see these. They are plain pydantic models so that a response can be
recorded as a step output and rebuilt identically on replay.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

Role = Literal["system", "user", "assistant", "tool"]


class ToolCall(BaseModel):
    """A tool call the model asked for. ``arguments`` is the parsed JSON object."""

    model_config = ConfigDict(extra="forbid")

    id: str
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class Message(BaseModel):
    """One conversation message.

    * ``user`` / ``system``: ``content``.
    * ``assistant``: ``content`` (may be empty) and/or ``tool_calls``; ``reasoning`` keeps
      the model's thinking where the provider returns it (sent back where it must be).
    * ``tool``: the result of the call ``tool_call_id`` (of tool ``name``) in ``content``.
    """

    model_config = ConfigDict(extra="forbid")

    role: Role
    content: str = ""
    tool_calls: list[ToolCall] = Field(default_factory=list)
    tool_call_id: str | None = None
    name: str | None = None
    reasoning: str | None = None
    reasoning_signature: str | None = None
    """Opaque provider token that must accompany ``reasoning`` when it is sent back
    (Anthropic's thinking-block signature)."""


class ToolSpec(BaseModel):
    """A tool as the model sees it: a name, a description and a JSON schema of its input."""

    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})


class Usage(BaseModel):
    """Tokens used by one call (or summed over a run)."""

    model_config = ConfigDict(extra="forbid")

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_creation_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        """Input plus output tokens."""
        return self.input_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cache_read_tokens=self.cache_read_tokens + other.cache_read_tokens,
            cache_creation_tokens=self.cache_creation_tokens + other.cache_creation_tokens,
            reasoning_tokens=self.reasoning_tokens + other.reasoning_tokens,
        )


class LLMRequest(BaseModel):
    """One call to a model."""

    model_config = ConfigDict(extra="forbid")

    model: str
    messages: list[Message]
    system: str | None = None
    tools: list[ToolSpec] = Field(default_factory=list)
    temperature: float | None = None
    max_output_tokens: int | None = None
    output_schema: dict[str, Any] | None = None
    """JSON schema the answer must follow (structured output), when the provider supports it."""
    output_schema_name: str = "output"
    extra: dict[str, Any] = Field(default_factory=dict)
    """Provider-specific keyword arguments passed through unchanged (``top_p``, ``thinking``...)."""


class LLMResponse(BaseModel):
    """What a model answered: text and/or tool calls, usage, and its reasoning if returned."""

    model_config = ConfigDict(extra="forbid")

    text: str = ""
    tool_calls: list[ToolCall] = Field(default_factory=list)
    reasoning: str | None = None
    reasoning_signature: str | None = None
    usage: Usage = Field(default_factory=Usage)
    model: str = ""
    finish_reason: str | None = None
    response_id: str | None = None

    def as_message(self) -> Message:
        """The assistant message to append to the conversation."""
        return Message(
            role="assistant",
            content=self.text,
            tool_calls=list(self.tool_calls),
            reasoning=self.reasoning,
            reasoning_signature=self.reasoning_signature,
        )


class StreamEvent(BaseModel):
    """One piece of a streamed answer.

    ``text_delta`` / ``reasoning_delta`` carry ``text``; ``tool_call`` carries a complete
    ``tool_call``; the last event is ``done`` with the whole ``response``.
    """

    model_config = ConfigDict(extra="forbid")

    type: Literal["text_delta", "reasoning_delta", "tool_call", "done"]
    text: str = ""
    tool_call: ToolCall | None = None
    response: LLMResponse | None = None


class LLMProvider(Protocol):
    """A model behind an API. Implementations: OpenAI (Chat Completions, Responses),
    Anthropic (Messages), any OpenAI-compatible server, and scripted models for tests."""

    name: str

    async def generate(self, request: LLMRequest) -> LLMResponse:
        """One complete answer."""
        ...

    def stream(self, request: LLMRequest) -> AsyncIterator[StreamEvent]:
        """The answer as it is produced; the last event is ``done`` with the full response."""
        ...
