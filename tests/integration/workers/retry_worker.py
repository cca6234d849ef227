"""Workflows for retrying failed and cancelled executions from where they stopped.

Environment:
    POLOS_API_URL: the orchestrator.
    SIDE_LOG: file each side effect appends ``<what> <execution id> <pid>`` to.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from pydantic import BaseModel

from polos import PolosClient, RetryPolicy, Worker, WorkflowContext, current_step, workflow

ONCE = RetryPolicy(max_attempts=1)


def side_log(what: str) -> None:
    path = os.environ.get("SIDE_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(f"{what} {current_step().execution_id} {os.getpid()}\n")


class FixInput(BaseModel):
    fixed_file: str


def _first() -> str:
    side_log("first")
    return "done"


def _check(fixed_file: str) -> str:
    side_log("check")
    if not Path(fixed_file).exists():
        raise RuntimeError("the upstream service is down")
    return "ok"


@workflow(id="until_fixed", retry=ONCE)
async def until_fixed(ctx: WorkflowContext, payload: FixInput) -> dict[str, str]:
    """Fails at its second step until ``fixed_file`` exists."""
    first = await ctx.step.run("first", _first)
    check = await ctx.step.run("check", _check, payload.fixed_file, retry_policy=ONCE)
    return {"first": first, "check": check}


@workflow(id="needs_approval")
async def needs_approval(ctx: WorkflowContext, payload: dict[str, int]) -> dict[str, object]:
    """One side effect, then a suspend: handy to cancel while it waits, then retry."""
    await ctx.step.run("prepare", side_log, "prepare")
    decision = await ctx.step.suspend("approval", data={"amount": payload.get("amount", 1)})
    return {"approved": decision.data, "by": decision.resumed_by, "comment": decision.comment}


@workflow(id="parent_of_failure", retry=ONCE)
async def parent_of_failure(ctx: WorkflowContext, payload: FixInput) -> dict[str, str]:
    """Waits for a failing child: the child cannot be retried on its own."""
    return await ctx.step.invoke_and_wait("child", until_fixed, payload)  # type: ignore[no-any-return]


LEAKED_KEY = "sk-proj-" + "Leak3d" * 5


def _refuse() -> None:
    raise RuntimeError(f"the provider refused key {LEAKED_KEY}")


@workflow(id="leaky", retry=ONCE)
async def leaky(ctx: WorkflowContext, payload: dict[str, int]) -> dict[str, object]:
    """Records a secret in a step output and in a caught step error (redaction tests)."""
    creds = await ctx.step.run(
        "login", lambda: {"api_key": LEAKED_KEY, "note": f"with {LEAKED_KEY}", "n": 1}
    )
    try:
        await ctx.step.run("call", _refuse, retry_policy=ONCE)
    except Exception:
        pass
    return {"n": creds["n"], "key_seen_by_workflow": creds["api_key"] == LEAKED_KEY}


if __name__ == "__main__":
    asyncio.run(
        Worker(
            client=PolosClient(),
            workflows=[until_fixed, needs_approval, parent_of_failure, leaky],
        ).run()
    )
