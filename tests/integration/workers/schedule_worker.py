"""Scheduled workflows for the schedule tests (``python schedule_worker.py``).

Environment:
    POLOS_API_URL: the orchestrator (read by ``PolosClient``).
    SIDE_LOG: file each run appends ``<workflow> <slot iso> <key> <pid>`` to.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from polos import PolosClient, SchedulePayload, Worker, WorkflowContext, workflow


def side_log(line: str) -> None:
    """Append one line to the side-effect log."""
    path = os.environ.get("SIDE_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(line + "\n")


@workflow(id="tick", schedule=True)
async def tick(ctx: WorkflowContext, payload: SchedulePayload) -> dict[str, Any]:
    """Records its slot and returns what it was given, typed."""
    await ctx.step.run(
        "log", side_log, f"tick {payload.timestamp.isoformat()} {payload.key} {os.getpid()}"
    )
    return {
        "timestamp": payload.timestamp.isoformat(),
        "tz": str(payload.timestamp.tzinfo),
        "last": payload.last_timestamp.isoformat() if payload.last_timestamp else None,
        "upcoming": payload.upcoming.isoformat() if payload.upcoming else None,
        "key": payload.key,
        "schedule_id": payload.schedule_id,
        "data": payload.data,
        "manual": payload.manual,
    }


@workflow(id="nightly", schedule={"cron": "30 2 * * *", "timezone": "Europe/Berlin"})
async def nightly(ctx: WorkflowContext, payload: dict[str, Any]) -> str:
    """Declared in code; a plain dict annotation gets the payload as JSON."""
    return str(payload["timestamp"])


@workflow(id="on_event", trigger_on_event="things/new")
async def on_event(ctx: WorkflowContext, payload: Any) -> None:
    """Event-triggered: cannot be scheduled through the API."""


worker = Worker(client=PolosClient(), workflows=[tick, nightly, on_event])

if __name__ == "__main__":
    asyncio.run(worker.run())
