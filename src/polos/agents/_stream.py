"""Streaming an agent run to its caller: live events on the run's topic.

A run started with ``streaming=True`` emits (``ctx.emit``, not recorded) on the topic
``agent/<execution id>``: ``llm_start`` at each model call attempt, ``text_delta`` /
``reasoning_delta`` chunks, each ``tool_call`` as soon as the model has made it, each
``tool_result``, and ``finish`` at the end. The recorded step is still the whole answer:
streaming changes what the caller sees early, not what is durable.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from ._agent import Agent
    from ._types import AgentResult

OutputT = TypeVar("OutputT")


def stream_topic(execution_id: str) -> str:
    """The topic an agent run streams on."""
    return f"agent/{execution_id}"


@dataclass(frozen=True)
class AgentStreamEvent:
    """One live event of a run: ``llm_start``, ``text_delta``, ``reasoning_delta``,
    ``tool_call``, ``tool_result`` or ``finish``."""

    type: str
    step: str = ""
    text: str = ""
    data: dict[str, Any] = field(default_factory=dict)


class AgentStream(Generic[OutputT]):
    """A running, streamed agent run: iterate it for live events, then ``await result()``.

    ``llm_start`` marks a new model call attempt: a consumer that shows text should start
    that call's text afresh (a retried call, or a resumed run, streams it again).
    """

    def __init__(self, agent: Agent[OutputT], client: Any, handle: Any) -> None:
        self.agent = agent
        self.client = client
        self.handle = handle
        self.execution_id: str = handle.id
        self.topic = stream_topic(self.execution_id)

    async def __aiter__(self) -> AsyncIterator[AgentStreamEvent]:
        done = asyncio.ensure_future(self.handle.result())
        events = self.client.events.stream(self.topic, after=0).__aiter__()
        try:
            while True:
                following = asyncio.ensure_future(events.__anext__())
                await asyncio.wait({following, done}, return_when=asyncio.FIRST_COMPLETED)
                if not following.done():
                    if done.exception() is not None:  # failed: no finish event will come
                        following.cancel()
                        with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                            await following
                        return
                    await asyncio.wait({following})  # the finish event is logged before the end
                event = following.result()
                data = event.data if isinstance(event.data, dict) else {}
                item = AgentStreamEvent(
                    type=str(data.get("type", "")),
                    step=str(data.get("step", "")),
                    text=str(data.get("text", "")),
                    data=data,
                )
                yield item
                if item.type == "finish":
                    return
        finally:
            if not done.done():
                done.cancel()
            with contextlib.suppress(BaseException):
                await done
            with contextlib.suppress(BaseException):
                await events.aclose()

    async def text_chunks(self) -> AsyncIterator[str]:
        """The answer's text as it arrives (all model calls of the run, in order)."""
        async for event in self:
            if event.type == "text_delta":
                yield event.text

    async def result(self, timeout: float | None = None) -> AgentResult[OutputT]:
        """The run's result (waits for the end).

        Raises:
            WorkflowFailedError: the run failed.
        """
        return self.agent.parse_result(await self.handle.result(timeout=timeout))
