"""Cron-scheduled workflows: one schedule declared in code, others made per user at run time.

Run it with ``python worker.py`` (or ``polos dev worker.py``), then ``python main.py``.
"""

import asyncio
import os
import tempfile
from pathlib import Path

from polos import PolosClient, SchedulePayload, Worker, WorkflowContext, workflow

# Side effects are appended here, so that main.py can show each run sent once.
OUTBOX = Path(os.environ.get("POLOS_EXAMPLE_TMP") or tempfile.gettempdir()) / "digests.log"


def send(line: str) -> None:
    with OUTBOX.open("a", encoding="utf-8") as f:
        f.write(line + "\n")


# Declared in code: workers register it when they connect. 09:00 Paris time, Monday to Friday.
@workflow(schedule={"cron": "0 9 * * 1-5", "timezone": "Europe/Paris"})
async def team_report(ctx: WorkflowContext, payload: SchedulePayload) -> dict:
    day = payload.timestamp.date()  # the slot this run is for, not when it happened to start
    await ctx.step.run("post", send, f"team-report {day} {ctx.execution_id}")
    return {"day": day.isoformat(), "manual": payload.manual}


# Scheduled through the API, once per user (the schedule's key), each in the user's zone.
@workflow(schedule=True)
async def user_digest(ctx: WorkflowContext, payload: SchedulePayload) -> dict:
    email = payload.data["email"]  # the schedule's own payload
    await ctx.step.run("send", send, f"digest {payload.key} {email} {ctx.execution_id}")
    return {
        "user": payload.key,
        "slot": payload.timestamp.isoformat(),
        "manual": payload.manual,
        "next": payload.upcoming.isoformat() if payload.upcoming else None,
    }


client = PolosClient()
worker = Worker(client=client, workflows=[team_report, user_digest])

if __name__ == "__main__":
    asyncio.run(worker.run())
