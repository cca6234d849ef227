"""Workflows that time out, hang and get cancelled (``tests/integration/test_timeouts.py``).

Started as a real process by the tests.

Environment:
    POLOS_API_URL: the orchestrator (read by ``PolosClient``).
    SIDE_LOG: file that the workflows append ``<what> <execution id> ...`` lines to.
    SERVE: ``all`` (default), ``parents`` or ``children``: which workflows this worker
        serves (so that a parent and its child run on different workers).
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from polos import (
    BatchWorkflowInput,
    PolosClient,
    RetryPolicy,
    StepTimeoutError,
    Worker,
    WorkflowContext,
    current_step,
    workflow,
)

NO_RETRY = RetryPolicy(max_attempts=1)


def side_log(line: str) -> None:
    """Append one line to the side-effect log (the ground truth of what really ran)."""
    path = os.environ.get("SIDE_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(line + "\n")


async def hang(label: str, seconds: float = 60.0) -> str:
    """A step that logs its start and then blocks on the event loop (cancellable)."""
    side_log(f"{label} start {current_step().execution_id} {os.getpid()}")
    await asyncio.sleep(seconds)
    side_log(f"{label} end {current_step().execution_id} {os.getpid()}")
    return label


async def _hang_then_more(ctx: WorkflowContext) -> str:
    eid = ctx.execution_id
    await ctx.step.run("first", side_log, f"first {eid}")
    try:
        await ctx.step.run("hang", hang, "hang", retry_policy=NO_RETRY)
    except BaseException as exc:
        side_log(f"workflow-saw {type(exc).__name__} {eid}")
        raise
    await ctx.step.run("after", side_log, f"after {eid}")
    return "finished"


@workflow(id="tw_hang", timeout=1.5)
async def tw_hang(ctx: WorkflowContext) -> str:
    """Its second step hangs: the 1.5 s run timeout ends it."""
    return await _hang_then_more(ctx)


@workflow(id="tw_hang_free")
async def tw_hang_free(ctx: WorkflowContext) -> str:
    """The same without a timeout of its own (invoked with ``run_timeout``)."""
    return await _hang_then_more(ctx)


@workflow(id="tw_suspend", timeout=1.0)
async def tw_suspend(ctx: WorkflowContext) -> str:
    """Waits for a person longer than its run timeout: the wait does not count."""
    await ctx.step.run("a", side_log, f"a {ctx.execution_id}")
    decision = await ctx.step.suspend("approval")
    await ctx.step.run("b", side_log, f"b {ctx.execution_id}")
    return f"approved={decision.data}"


@workflow(id="tw_wall", timeout=1.0, timeout_counts_waits=True)
async def tw_wall(ctx: WorkflowContext) -> str:
    """The same, but waits count: it times out while suspended."""
    decision = await ctx.step.suspend("approval")
    return f"approved={decision.data}"


@workflow(id="tw_crash", timeout=3.0)
async def tw_crash(ctx: WorkflowContext) -> str:
    """One 2.5 s step: fits the 3 s run timeout alone, not after a crashed 1.5 s attempt."""
    await ctx.step.run("slow", hang, "slow", 2.5, retry_policy=NO_RETRY)
    return "finished"


def _blocking(seconds: float) -> str:
    side_log(f"sync start {current_step().execution_id}")
    time.sleep(seconds)
    side_log(f"sync end {current_step().execution_id}")
    return "late"


@workflow(id="tw_step_timeouts")
async def tw_step_timeouts(ctx: WorkflowContext) -> dict[str, Any]:
    """An async step that times out on every attempt, a sync one that cannot be stopped."""
    out: dict[str, Any] = {}
    policy = RetryPolicy(max_attempts=2, initial_interval=0.05, jitter=0)
    try:
        await ctx.step.run("async", hang, "async", timeout=0.2, retry_policy=policy)
    except StepTimeoutError as exc:
        out["async"] = [exc.error_type, exc.attempts]
    try:
        await ctx.step.run("sync", _blocking, 1.0, timeout=0.2, retry_policy=NO_RETRY)
    except StepTimeoutError as exc:
        out["sync"] = [exc.error_type, exc.attempts]
    out["quick"] = await ctx.step.run("quick", lambda: "ok", timeout=5)
    return out


@workflow(id="tw_careless")
async def tw_careless(ctx: WorkflowContext) -> str:
    """Wraps a long step in ``except Exception``, as careless code does."""
    eid = ctx.execution_id
    try:
        try:
            await ctx.step.run("long", hang, "long", retry_policy=NO_RETRY)
        except Exception as exc:
            side_log(f"swallowed {type(exc).__name__} {eid}")
        await ctx.step.run("after", side_log, f"after {eid}")
        return "finished"
    except BaseException as exc:
        side_log(f"careless-saw {type(exc).__name__} {eid}")
        raise
    finally:
        side_log(f"careless-finally {eid}")


@workflow(id="tw_child")
async def tw_child(ctx: WorkflowContext) -> str:
    """A child that runs a long step (on a worker of its own in the tests)."""
    try:
        await ctx.step.run("kid", hang, "kid", retry_policy=NO_RETRY)
    finally:
        side_log(f"kid-finally {ctx.execution_id} {os.getpid()}")
    return "done"


@workflow(id="tw_suspender")
async def tw_suspender(ctx: WorkflowContext) -> str:
    """A child that waits for a person."""
    await ctx.step.suspend("ask")
    return "resumed"


@workflow(id="tw_parent")
async def tw_parent(ctx: WorkflowContext) -> list[str]:
    """Waits for a running child and a suspended one."""
    results = await ctx.step.batch_invoke_and_wait(
        "kids", [BatchWorkflowInput("tw_child"), BatchWorkflowInput("tw_suspender")]
    )
    return [r.status for r in results]


PARENTS = [tw_hang, tw_hang_free, tw_suspend, tw_wall, tw_crash, tw_step_timeouts, tw_careless]
PARENTS.append(tw_parent)
CHILDREN = [tw_child, tw_suspender]

serve = os.environ.get("SERVE", "all")
workflows = {"parents": PARENTS, "children": CHILDREN}.get(serve, PARENTS + CHILDREN)
worker = Worker(PolosClient(), workflows=workflows)

if __name__ == "__main__":
    asyncio.run(worker.run())
