"""``ScriptedProvider``: an in-process model for unit tests, answering from a script.

No HTTP and no client library: the answers are given by the test, either as a list
consumed in order or as a function of the request. For tests of the adapters
themselves over real HTTP, see ``polos.testing.FakeLLMServer``.
"""

from __future__ import annotations

import re
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from polos.errors import LLMError

from ._types import LLMRequest, LLMResponse, StreamEvent, ToolCall, Usage

__all__ = ["ScriptedProvider", "ScriptedReply"]

ToolCallLike = ToolCall | tuple[str, dict[str, Any]]


@dataclass
class ScriptedReply:
    """One scripted answer.

    Attributes:
        text: the answer's text.
        tool_calls: ``ToolCall`` objects or ``(name, arguments)`` pairs (ids are then
            ``call_1``, ``call_2``... counted over the provider's life).
        reasoning: the model's thinking, if it should have some.
        usage: tokens reported; None: estimated as one token per word (input: every
            message of the request; output: the text), so sums over a run are non-zero.
        error: raised instead of answering (``LLMRateLimitError``...), consuming the reply.
        finish_reason: None: ``tool_calls`` if there are calls, else ``stop``.
    """

    text: str = ""
    tool_calls: Sequence[ToolCallLike] = field(default_factory=list)
    reasoning: str | None = None
    usage: Usage | None = None
    error: LLMError | None = None
    finish_reason: str | None = None


Script = Sequence[ScriptedReply | LLMResponse] | Callable[[LLMRequest], ScriptedReply | LLMResponse]


def _words(text: str) -> int:
    return len(text.split())


def _chunks(text: str, parts: int = 3) -> list[str]:
    """``text`` cut at word boundaries into up to ``parts`` pieces that join back to it."""
    if not text:
        return []
    words = re.split(r"(?<=\s)(?=\S)", text)
    size = -(-len(words) // parts)
    return ["".join(words[i : i + size]) for i in range(0, len(words), size)]


class ScriptedProvider:
    """An :class:`~polos.llm.LLMProvider` answering from a script, for unit tests.

    ``ScriptedProvider([ScriptedReply(tool_calls=[("add", {"a": 1})]), ScriptedReply("3")])``
    answers the first call with a tool call and the second with text;
    ``ScriptedProvider(lambda request: ScriptedReply(text=request.messages[-1].content))``
    echoes. Every request is recorded in :attr:`requests`; a script that runs out raises
    ``AssertionError`` naming the call, since the test expected fewer calls.
    """

    name = "scripted"

    def __init__(self, replies: Script) -> None:
        self._script = replies if callable(replies) else list(replies)
        self._next = 0
        self._call_ids = 0
        self._lock = threading.Lock()
        self.requests: list[LLMRequest] = []
        """Every request received, in order (deep copies)."""

    @property
    def remaining(self) -> int:
        """Scripted replies not used yet (0 for a function script)."""
        return 0 if callable(self._script) else len(self._script) - self._next

    def _reply_for(self, request: LLMRequest) -> ScriptedReply | LLMResponse:
        with self._lock:
            self.requests.append(request.model_copy(deep=True))
            if callable(self._script):
                script = self._script
            else:
                if self._next >= len(self._script):
                    raise AssertionError(
                        f"ScriptedProvider: no reply left for call #{len(self.requests)} "
                        f"(the script had {len(self._script)})"
                    )
                reply = self._script[self._next]
                self._next += 1
                return reply
        return script(request)

    def _tool_call(self, call: ToolCallLike) -> ToolCall:
        if isinstance(call, ToolCall):
            return call
        name, arguments = call
        with self._lock:
            self._call_ids += 1
            number = self._call_ids
        return ToolCall(id=f"call_{number}", name=name, arguments=dict(arguments))

    def _respond(self, request: LLMRequest) -> LLMResponse:
        reply = self._reply_for(request)
        if isinstance(reply, LLMResponse):
            return reply
        if reply.error is not None:
            raise reply.error
        calls = [self._tool_call(call) for call in reply.tool_calls]
        usage = reply.usage
        if usage is None:
            prompt = [request.system or ""] + [m.content for m in request.messages]
            usage = Usage(
                input_tokens=sum(_words(text) for text in prompt),
                output_tokens=_words(reply.text) + _words(reply.reasoning or ""),
            )
        return LLMResponse(
            text=reply.text,
            tool_calls=calls,
            reasoning=reply.reasoning,
            usage=usage,
            model=request.model,
            finish_reason=reply.finish_reason or ("tool_calls" if calls else "stop"),
            response_id=f"scripted-{len(self.requests)}",
        )

    async def generate(self, request: LLMRequest) -> LLMResponse:
        """The next scripted answer."""
        return self._respond(request)

    async def stream(self, request: LLMRequest) -> AsyncIterator[StreamEvent]:
        """The next scripted answer as reasoning and text deltas (a few pieces each),
        one ``tool_call`` event per call, then ``done``."""
        response = self._respond(request)
        for piece in _chunks(response.reasoning or ""):
            yield StreamEvent(type="reasoning_delta", text=piece)
        for piece in _chunks(response.text):
            yield StreamEvent(type="text_delta", text=piece)
        for call in response.tool_calls:
            yield StreamEvent(type="tool_call", tool_call=call)
        yield StreamEvent(type="done", response=response)
