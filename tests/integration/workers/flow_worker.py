"""Workflows on limited queues: they measure their own concurrency.

Each execution, while it runs, holds a place in a shared counter file (one per
queue and one per concurrency key), updated under ``flock`` by every worker
process: the counter's high-water mark is the largest number of executions
that were *really* running at the same moment, whatever the orchestrator says.

Environment:
    POLOS_API_URL: the orchestrator.
    FLOW_DIR: directory of the counter files and the start log.
    MAX_CONCURRENT: the worker's slots (default 100).
    HOLD_SECONDS: how long each execution runs (default 0.05).
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from polos import PolosClient, Queue, RateLimit, Worker, WorkflowContext, workflow

HOLD = float(os.environ.get("HOLD_SECONDS", "0.05"))

LIMITED = Queue("limited", concurrency_limit=5)
PER_TENANT = Queue("per-tenant", concurrency_limit=6, per_key_limit=2)
STARTS = Queue(
    "starts", rate_limit=RateLimit("starts-per-2s", limit=4, period=timedelta(seconds=2))
)
TOKENS = RateLimit("tokens", limit=100, period=timedelta(seconds=2))


def _dir() -> Path:
    return Path(os.environ["FLOW_DIR"])


@contextmanager
def _counters() -> Iterator[dict[str, Any]]:
    """The shared counters, locked across processes while the block runs."""
    path = _dir() / "counters.json"
    with open(_dir() / "counters.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            state = json.loads(path.read_text()) if path.exists() else {"now": {}, "max": {}}
            yield state
            path.write_text(json.dumps(state))
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _enter(names: list[str]) -> None:
    with _counters() as state:
        for name in names:
            state["now"][name] = state["now"].get(name, 0) + 1
            state["max"][name] = max(state["max"].get(name, 0), state["now"][name])


def _leave(names: list[str]) -> None:
    with _counters() as state:
        for name in names:
            state["now"][name] -= 1


def _log(line: str) -> None:
    with open(_dir() / "log.txt", "a") as f:
        f.write(line + "\n")


async def _hold(ctx: WorkflowContext, names: list[str]) -> None:
    _enter(names)
    try:
        _log(f"start {ctx.execution_id} {time.time():.6f} {os.getpid()}")
        await asyncio.sleep(HOLD)
    finally:
        _leave(names)


@workflow(queue=LIMITED)
async def limited(ctx: WorkflowContext, payload: dict[str, Any]) -> str:
    """Runs HOLD seconds in queue 'limited' (5 at once)."""
    await ctx.step.run("work", _hold, ctx, ["limited"])
    return ctx.execution_id


@workflow(queue=PER_TENANT)
async def per_tenant(ctx: WorkflowContext, payload: dict[str, Any]) -> str:
    """Runs HOLD seconds in queue 'per-tenant' (6 at once, 2 per tenant)."""
    tenant = payload["tenant"]
    await ctx.step.run("work", _hold, ctx, ["per-tenant", f"tenant:{tenant}"])
    return tenant


@workflow(queue=LIMITED)
async def limited_approval(ctx: WorkflowContext, payload: dict[str, Any]) -> str:
    """Holds a slot of 'limited' only while it runs: parked at suspend it holds none."""
    await ctx.step.suspend("approval")
    await ctx.step.run("work", _hold, ctx, ["limited"])
    return "approved"


@workflow(queue=STARTS)
async def rate_started(ctx: WorkflowContext, payload: dict[str, Any]) -> float:
    """Records when it started; queue 'starts' allows 4 starts per 2 s."""
    started = time.time()
    _log(f"rate-start {ctx.execution_id} {started:.6f}")
    return started


@workflow
async def spend_tokens(ctx: WorkflowContext, payload: dict[str, Any]) -> list[float]:
    """Takes ``units`` of rate limit 'tokens' ``times`` times; logs each grant."""
    grants = []
    for _ in range(payload.get("times", 1)):
        grant = await ctx.step.acquire("tokens", units=payload["units"], key=payload.get("key"))
        grants.append(grant.granted_at.timestamp())
        _log(f"grant {ctx.execution_id} {payload['units']} {grant.granted_at.timestamp():.6f}")
    return grants


@workflow
async def spend_inline(ctx: WorkflowContext, payload: dict[str, Any]) -> str:
    """acquire() with a RateLimit object (defines it), with a timeout."""
    limit = RateLimit("inline", limit=1, period=timedelta(seconds=payload.get("period", 60)))
    await ctx.step.acquire(limit, timeout=payload.get("timeout"))
    await ctx.step.acquire(limit, timeout=payload.get("timeout"))
    return "both granted"


worker = Worker(
    client=PolosClient(),
    workflows=[limited, per_tenant, limited_approval, rate_started, spend_tokens, spend_inline],
    max_concurrent=int(os.environ.get("MAX_CONCURRENT", "100")),
    rate_limits=[TOKENS],
)

if __name__ == "__main__":
    asyncio.run(worker.run())
