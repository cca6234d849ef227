"""Workflows started by events, waiting for events, and taking events in batches.

Run it with ``python worker.py`` (or ``polos dev worker.py``), then ``python main.py``.
"""

import asyncio
import os
import tempfile
from collections import Counter
from datetime import timedelta
from pathlib import Path

from pydantic import BaseModel

from polos import PolosClient, Worker, WorkflowContext, workflow

# Side effects are appended here, so that main.py can show each one happened once.
OUTBOX = Path(os.environ.get("POLOS_EXAMPLE_TMP") or tempfile.gettempdir()) / "outbox.log"


def send(line: str) -> None:
    with OUTBOX.open("a", encoding="utf-8") as f:
        f.write(line + "\n")


# ---------------------------------------------------------------- one execution per event


class Signup(BaseModel):
    user_id: str
    email: str


@workflow(trigger_on_event="user/signed_up")  # every event on the topic starts one execution
async def onboard_user(ctx: WorkflowContext, signup: Signup) -> dict:
    await ctx.step.run("send_verification", send, f"verify {signup.user_id} {ctx.execution_id}")

    # Park until the user clicks the link: no worker is held while we wait, for days if need be.
    verified = await ctx.step.wait_for_event(
        "email_verified", topic=f"user.verified/{signup.user_id}", timeout=timedelta(days=7)
    )

    await ctx.step.run("send_welcome", send, f"welcome {signup.user_id} {ctx.execution_id}")
    # Recorded as a step: a replay or a retry never publishes it twice.
    announced = await ctx.step.publish_event(
        "announce", topic="user/onboarded", data={"user_id": signup.user_id}
    )
    return {
        "user_id": signup.user_id,
        "status": "onboarded",
        "verified": verified.data,
        "announced": f"{announced.topic} #{announced.seq}",
    }


# ---------------------------------------------------------------- many events per execution


class PageView(BaseModel):
    path: str


# One execution per 5 events, or 1 second after the first pending event, whichever is first.
@workflow(trigger_on_event="analytics/pageview", batch_size=5, batch_timeout_seconds=1.0)
async def count_pageviews(ctx: WorkflowContext, views: list[PageView]) -> dict[str, int]:
    counts = dict(Counter(view.path for view in views))
    await ctx.step.run("store", send, f"pageviews {len(views)} {ctx.execution_id}")
    return counts


client = PolosClient()
worker = Worker(client=client, workflows=[onboard_user, count_pageviews])

if __name__ == "__main__":
    asyncio.run(worker.run())
