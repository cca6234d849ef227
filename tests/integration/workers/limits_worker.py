"""Workflows that hit the size limits (``POLOS_MAX_*_BYTES``), for ``test_limits.py``.

Environment: ``POLOS_API_URL``; the limits (read by the worker to check before sending,
and by the orchestrator, which checks anyway).
"""

from __future__ import annotations

import asyncio

from polos import (
    PayloadTooLargeError,
    PolosClient,
    RetryPolicy,
    Worker,
    WorkflowContext,
    workflow,
)


def _blob(size: int) -> str:
    return "x" * size


@workflow(id="big_step_caught")
async def big_step_caught(ctx: WorkflowContext, payload: dict) -> dict[str, object]:
    """A step whose output is over the limit: the workflow catches the error and goes on."""
    try:
        await ctx.step.run("big", _blob, payload["size"])
    except PayloadTooLargeError as exc:
        small = await ctx.step.run("small", _blob, 3)
        return {"caught": exc.message, "code": exc.code, "small": small}
    return {"caught": None}


@workflow(id="big_step_uncaught", retry=RetryPolicy(max_attempts=2, initial_interval=0.05))
async def big_step_uncaught(ctx: WorkflowContext, payload: dict) -> str:
    """The error is not caught: the attempt fails, the workflow's retry policy applies."""
    return str(await ctx.step.run("big", _blob, payload["size"]))


@workflow(id="big_result")
async def big_result(ctx: WorkflowContext, payload: dict) -> str:
    """Returns a result over the limit: the execution ends failed, naming the limit."""
    return _blob(payload["size"])


worker = Worker(client=PolosClient(), workflows=[big_step_caught, big_step_uncaught, big_result])

if __name__ == "__main__":
    asyncio.run(worker.run())
