"""Workflows whose code reads ``ctx.state`` before their first step, for ``test_state_replay.py``.

A replay (after a wait, a crash or a retry) must start from the state the execution
started with: the recorded steps then restore the snapshots they took, in order. If a
replay started from the *latest* state instead, ``state_loop`` would skip its loop and
return no results.

Started as a real process (``python state_worker.py``) so the tests can ``kill -9`` it.

Environment:
    POLOS_API_URL: the orchestrator (read by ``PolosClient``).
    SIDE_LOG: file that side-effect steps append ``<what> <execution id> <pid>`` lines to.
"""

from __future__ import annotations

import asyncio
import os
from typing import Literal

from pydantic import BaseModel

from polos import PolosClient, RetryPolicy, Worker, WorkflowContext, workflow


def side_log(line: str) -> None:
    """Append one line to the side-effect log (the ground truth of what really ran)."""
    path = os.environ.get("SIDE_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(line + "\n")


class Progress(BaseModel):
    done: int = 0


class LoopInput(BaseModel):
    # What ends the first attempt after the loop: a suspend (resumed by the test), a
    # sleep (the test kills the worker during it), or an error (the workflow retries).
    then: Literal["suspend", "sleep", "fail"] = "suspend"
    seconds: float = 2.0
    fail_attempts: int = 1  # with then="fail": how many attempts fail


@workflow(
    id="state_loop", state_schema=Progress, retry=RetryPolicy(max_attempts=2, initial_interval=0.05)
)
async def state_loop(ctx: WorkflowContext, payload: LoopInput) -> dict[str, object]:
    """Works until ``ctx.state.done`` reaches 3, one step per round; then waits or fails."""
    started_with = ctx.state.done  # read before any step: the initial state on every attempt

    def work() -> int:
        side_log(f"work {ctx.execution_id} {os.getpid()}")
        return ctx.state.done * 10

    results = []
    while ctx.state.done < 3:
        results.append(await ctx.step.run("work", work))
        ctx.state.done += 1
    if payload.then == "suspend":
        await ctx.step.suspend("review")
    elif payload.then == "sleep":
        await ctx.step.sleep("nap", payload.seconds)
    elif ctx.attempt <= payload.fail_attempts:
        raise RuntimeError(f"attempt {ctx.attempt} fails after the loop")
    return {"results": results, "done": ctx.state.done, "started_with": started_with}


@workflow(id="state_parent")
async def state_parent(ctx: WorkflowContext, done: int) -> dict[str, object]:
    """Runs ``state_loop`` as a child that starts with ``done`` rounds already done."""
    result: dict[str, object] = await ctx.step.invoke_and_wait(
        "child", state_loop, LoopInput(then="suspend"), initial_state=Progress(done=done)
    )
    return result


worker = Worker(PolosClient(), workflows=[state_loop, state_parent])

if __name__ == "__main__":
    asyncio.run(worker.run())
