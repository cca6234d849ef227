"""Workflows whose traces the tracing tests read: a child, a suspend, a failure.

Started as a real process by ``tests/integration/test_traces.py``
(``python trace_worker.py``) and imported by it for the ``Workflow`` objects.

Environment:
    POLOS_API_URL: the orchestrator (read by ``PolosClient``).
"""

from __future__ import annotations

import asyncio
import os
import signal

from polos import PolosClient, RetryPolicy, Worker, WorkflowContext, workflow

NO_RETRY = RetryPolicy(max_attempts=1)


def _refuse(amount: int) -> None:
    raise ValueError(f"card declined for {amount}")


@workflow(id="trace_child", retry=NO_RETRY)
async def trace_child(ctx: WorkflowContext, n: int) -> int:
    """A child: one step that doubles ``n``."""
    return await ctx.step.run("double", lambda: n * 2)


@workflow(id="trace_parent", retry=NO_RETRY)
async def trace_parent(ctx: WorkflowContext, n: int) -> dict[str, object]:
    """A run step, a child it waits for, a suspend for a human, a caught step failure."""
    prepared = await ctx.step.run("prepare", lambda: n + 1)
    doubled = await ctx.step.invoke_and_wait("child", trace_child, prepared)
    decision = await ctx.step.suspend("approval", data={"doubled": doubled})
    try:
        await ctx.step.run("charge", _refuse, doubled, retry_policy=NO_RETRY)
    except Exception:  # a recorded step error the workflow survives: an error span
        pass
    return {"doubled": doubled, "approved": decision.data}


@workflow(id="trace_failing", retry=NO_RETRY)
async def trace_failing(ctx: WorkflowContext, n: int) -> None:
    """Fails after one step: an execution span with an error status."""
    await ctx.step.run("before", asyncio.sleep, 0)
    raise RuntimeError(f"boom {n}")


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


@workflow(id="trace_dies", retry=NO_RETRY, max_recovery_attempts=1)
async def trace_dies(ctx: WorkflowContext, n: int) -> None:
    """Kills its worker: with a recovery budget of 1 the orchestrator fails it at once."""
    await ctx.step.run("die", _die)


worker = Worker(PolosClient(), workflows=[trace_child, trace_parent, trace_failing, trace_dies])

if __name__ == "__main__":
    asyncio.run(worker.run())
