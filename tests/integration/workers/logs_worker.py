"""A worker whose workflows log from user code (run with ``POLOS_LOG_FORMAT=json``).

Started as a real process by ``tests/integration/test_structured_logs.py``: every
line the user's logger writes inside a workflow or a step should carry the ids of
the execution (and of the step) it belongs to.
"""

from __future__ import annotations

import asyncio
import logging

from polos import PolosClient, Worker, WorkflowContext, workflow

log = logging.getLogger("user.code")


def _sync_step(n: int) -> int:
    log.info("sync step says %d", n)  # runs in a thread
    return n


async def _async_step(n: int) -> int:
    log.info("async step says %d", n)
    return n


@workflow(id="logs_something")
async def logs_something(ctx: WorkflowContext, payload: dict) -> int:
    """Logs from its body and from a sync and an async step."""
    log.info("workflow body runs")
    a = await ctx.step.run("sync_part", _sync_step, 1)
    b = await ctx.step.run("async_part", _async_step, 2)
    return a + b


@workflow(id="logs_sync")
def logs_sync(ctx: WorkflowContext, payload: dict) -> int:
    """A synchronous workflow (run in a thread) logging from its body and its step."""
    log.info("sync workflow body runs")
    return ctx.step.run_sync("in_thread", _sync_step, 3)


@workflow(id="sleeps")
async def sleeps(ctx: WorkflowContext, payload: dict) -> None:
    """Runs until killed (for the orchestrator's requeue log line)."""
    log.info("about to sleep")
    await ctx.step.run("nap", asyncio.sleep, 30)


worker = Worker(client=PolosClient(), workflows=[logs_something, logs_sync, sleeps])

if __name__ == "__main__":
    asyncio.run(worker.run())
