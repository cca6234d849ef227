"""Publish events: they start workflows, wake a waiting one, and arrive in batches."""

import asyncio
import os
import tempfile
import time
from pathlib import Path

from polos import PolosClient

OUTBOX = Path(os.environ.get("POLOS_EXAMPLE_TMP") or tempfile.gettempdir()) / "outbox.log"
USERS = {"u-ada": "ada@example.com", "u-linus": "linus@example.com"}


async def wait_until(probe, what: str, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while not (value := await probe()):
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)
    return value


async def main() -> None:
    client = PolosClient()
    started_at = int(time.time() * 1000)

    # 1. Each event on user/signed_up starts one onboard_user execution.
    executions = {}
    for user_id, email in USERS.items():
        event = await client.events.publish("user/signed_up", {"user_id": user_id, "email": email})
        executions[user_id] = event.triggered[0]
        print(f"published user/signed_up #{event.seq} ({user_id}) -> started {event.triggered[0]}")

    # 2. Both now wait for their user's verification event, holding no worker.
    async def both_waiting():
        page = await client.list_waits("event", workflow_id="onboard_user", limit=500)
        waits = {w.execution_id: w for w in page.items}
        return (
            [waits[i] for i in executions.values()]
            if set(executions.values()) <= set(waits)
            else None
        )

    for wait in await wait_until(both_waiting, "both signups to wait for verification"):
        print(f"  onboard_user waits at step {wait.step_key!r} for an event on {wait.topic}")

    # 3. The verification events wake them up; each finishes on whichever worker is free.
    for user_id, execution_id in executions.items():
        await client.events.publish(f"user.verified/{user_id}", {"via": "email link"})
        result = await client.handle(execution_id).result(timeout=15)
        print(f"published user.verified/{user_id} -> {result['status']} ({result['verified']})")
        print(f"  and it published {result['announced']}")

    # 4. Seven page views: one execution gets the first 5 at once, a second one the last 2
    #    after the one-second batch timeout.
    views = ["/", "/pricing", "/", "/docs", "/", "/pricing", "/blog"]
    await client.events.publish_many(("analytics/pageview", {"path": p}) for p in views)

    async def all_counted():
        page = await client.list_executions(
            workflow_id="count_pageviews", created_after=started_at, limit=100
        )
        done = [e for e in page.items if e.status == "completed"]
        counted = sum(len(e.payload) for e in done)
        return sorted(done, key=lambda e: e.created_at) if counted == len(views) else None

    for batch in await wait_until(all_counted, "the page views to be counted"):
        print(f"count_pageviews got a batch of {len(batch.payload)} events -> {batch.result}")

    # The outbox shows each welcome e-mail went out exactly once per execution.
    lines = OUTBOX.read_text().splitlines() if OUTBOX.exists() else []
    for user_id, execution_id in executions.items():
        sent = lines.count(f"welcome {user_id} {execution_id}")
        print(f"welcome e-mail to {user_id}: sent {sent} time(s)")
        if sent != 1:
            raise SystemExit(f"expected exactly one welcome e-mail to {user_id}")


if __name__ == "__main__":
    asyncio.run(main())
