"""A worker script whose workflows stream live events (``ctx.emit``) between steps.

Started as a real process by ``tests/integration/test_emit.py``.

Environment:
    POLOS_API_URL: the orchestrator (read by ``PolosClient``).
    SIDE_LOG: file that the workflows append what they did to.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from pydantic import BaseModel

from polos import PolosClient, Worker, WorkflowContext, workflow


def side_log(line: str) -> None:
    """Append one line to the side-effect log."""
    path = os.environ.get("SIDE_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(line + "\n")


class LiveInput(BaseModel):
    count: int = 200
    steps: int = 4
    topic: str | None = None
    """Where to emit; default ``live/<execution id>``."""


async def _work(n: int) -> int:
    await asyncio.sleep(0.05)
    return n


@workflow(id="live_emitter")
async def live_emitter(ctx: WorkflowContext, payload: LiveInput) -> dict[str, object]:
    """``count`` live events ``{"i": i}``, with a step before each of ``steps`` slices, then
    an exactly-once ``{"end": true}`` event on the same topic (a ``publish_event`` step)."""
    topic = payload.topic or f"live/{ctx.execution_id}"
    per_step = max(1, payload.count // payload.steps)
    for i in range(payload.count):
        if i % per_step == 0:
            await ctx.step.run(f"s{i // per_step}", _work, i)
        await ctx.emit(topic, {"i": i})
        if i % 10 == 9:
            await asyncio.sleep(0.005)  # spread the stream over several batches
    await ctx.step.publish_event("end", topic, {"end": True})
    return {"topic": topic, "emitted": payload.count}


class ZombieInput(BaseModel):
    marker: str
    """A file the test creates once this attempt has lost its lease."""
    after_marker: int = 10


@workflow(id="emit_until_marker")
async def emit_until_marker(ctx: WorkflowContext, payload: ZombieInput) -> int:
    """Emit ``{"attempt", "i", "late"}`` every 20 ms to ``live/<execution id>``; ``late``
    once the marker exists; stop ``after_marker`` emits after that."""
    topic = f"live/{ctx.execution_id}"
    await ctx.step.run("start", side_log, f"start {ctx.attempt} {os.getpid()}")
    marker = Path(payload.marker)
    i = late_count = 0
    while late_count < payload.after_marker:
        late = marker.exists()
        late_count += late
        side_log(f"emit {ctx.attempt} {i} {'late' if late else 'early'} {os.getpid()}")
        await ctx.emit(topic, {"attempt": ctx.attempt, "i": i, "late": late})
        i += 1
        await asyncio.sleep(0.02)
    return ctx.attempt


client = PolosClient()
worker = Worker(client=client, workflows=[live_emitter, emit_until_marker])

if __name__ == "__main__":
    asyncio.run(worker.run())
