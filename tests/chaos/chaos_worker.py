"""Worker for the chaos test: 5 steps, each logs ``execution step pid`` before working."""

from __future__ import annotations

import asyncio
import os
import time

from polos import PolosClient, Worker, WorkflowContext, current_step, workflow

LOG = os.environ["CHAOS_LOG"]


def effect(step: int, delay: float) -> int:
    """The side effect: one O_APPEND line (atomic), written before the step's work."""
    info = current_step()
    fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{info.execution_id} s{step} {os.getpid()}\n".encode())
    finally:
        os.close(fd)
    time.sleep(delay)
    return step


@workflow(id="chaos")
async def chaos(ctx: WorkflowContext, delay: float) -> list[int]:
    """Five steps whose results are 1..5."""
    return [await ctx.step.run(f"s{i}", effect, i, delay) for i in range(1, 6)]


if __name__ == "__main__":
    worker = Worker(
        client=PolosClient(),
        workflows=[chaos],
        max_concurrent=int(os.environ.get("CHAOS_CONCURRENCY", "20")),
        shutdown_grace=1,
    )
    asyncio.run(worker.run())
