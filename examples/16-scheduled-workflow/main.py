"""Create per-user cron schedules, show when they fire next, and run them now."""

import asyncio
import os
import tempfile
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from polos import PolosClient

OUTBOX = Path(os.environ.get("POLOS_EXAMPLE_TMP") or tempfile.gettempdir()) / "digests.log"

# Every user gets their digest at 08:00 (weekdays) in their own time zone.
USERS = {
    "user-42": ("ada@example.com", "America/New_York"),
    "user-7": ("kenji@example.com", "Asia/Tokyo"),
}


def when(epoch_ms: int | None, zone: str) -> str:
    """An epoch-ms time in the schedule's zone, with UTC beside it."""
    if epoch_ms is None:
        return "none"
    moment = datetime.fromtimestamp(epoch_ms / 1000, ZoneInfo(zone))
    utc = moment.astimezone(ZoneInfo("UTC"))
    return f"{moment:%a %Y-%m-%d %H:%M %Z} ({utc:%H:%M} UTC)"


async def main() -> None:
    client = PolosClient()

    # 1. The schedule declared with @workflow(schedule=...) exists as soon as a worker connects.
    (report,) = (await client.schedules.list("team_report")).items
    print(f"team_report  [{report.source}] '{report.cron}' {report.timezone}")
    print(f"    next run: {when(report.next_at, report.timezone)}")

    # 2. One schedule per user, made at run time; creating it again just updates it.
    schedules = {}
    for user, (email, zone) in USERS.items():
        s = await client.schedules.create(
            "user_digest", "0 8 * * 1-5", zone, key=user, payload={"email": email}
        )
        schedules[user] = s
        print(f"user_digest  [{s.source}] '{s.cron}' {zone} key={user}")
        print(f"    next run: {when(s.next_at, zone)}")

    # 3. Cron fires at most once a minute, so rather than wait, trigger each schedule now:
    #    a run with manual=True and "now" as its slot.
    runs = []
    for s in [report, *schedules.values()]:
        triggered = await client.schedules.trigger(s.id)
        result = await client.handle(triggered.execution_id).result(timeout=15)
        runs.append(triggered.execution_id)
        print(f"triggered {s.workflow_id}/{s.key}: {result}")

    # 4. A paused schedule keeps its settings but fires nothing until resumed.
    paused = await client.schedules.pause(schedules["user-7"].id)
    print(f"paused user-7's digest: status={paused.status}, next run: {paused.next_at}")
    resumed = await client.schedules.resume(paused.id)
    print(f"resumed it: next run {when(resumed.next_at, resumed.timezone)}")

    # Each triggered run sent exactly one message.
    lines = OUTBOX.read_text().splitlines() if OUTBOX.exists() else []
    sent = [sum(line.endswith(f" {run}") for line in lines) for run in runs]
    print(f"messages sent per run: {sent}")
    if sent != [1] * len(runs):
        raise SystemExit("each triggered run should have sent exactly one message")


if __name__ == "__main__":
    asyncio.run(main())
