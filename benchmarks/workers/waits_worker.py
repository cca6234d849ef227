"""The Polos worker of the waits benchmark: ``python waits_worker.py [max_concurrent]``.

It reads ``POLOS_API_URL`` (set by ``WorkerProcess``) and serves the workflows of
``benchmarks/waits_bench.py``. Each one stamps ``time.time()`` as the first action of the
step that runs right after its wait (an ``async`` step, so it runs on the worker's event
loop, not in a thread), and returns that stamp:

* ``wb_approve``: ``ctx.step.suspend("approval")``, then the stamp step.
* ``wb_event_waiter``: ``ctx.step.wait_for_event("ev", topic=payload["topic"])``, then the
  stamp step.
* ``wb_on_event``: started by every event on ``wbench/trigger`` (``trigger_on_event``); its
  first step is the stamp step.
* ``wb_sleeper``: ``started = ctx.step.now("started")``, ``ctx.step.sleep("nap",
  payload["seconds"])``, then the stamp step; returns ``started`` and the stamp.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from typing import Any

from polos import PolosClient, Worker, WorkflowContext, workflow

TRIGGER_TOPIC = "wbench/trigger"


async def stamp() -> float:
    return time.time()


@workflow(id="wb_approve")
async def wb_approve(ctx: WorkflowContext, payload: Any = None) -> dict[str, float]:
    await ctx.step.suspend("approval")
    return {"woke": await ctx.step.run("woke", stamp)}


@workflow(id="wb_event_waiter")
async def wb_event_waiter(ctx: WorkflowContext, payload: dict[str, Any]) -> dict[str, Any]:
    event = await ctx.step.wait_for_event("ev", topic=payload["topic"])
    return {"woke": await ctx.step.run("woke", stamp), "seq": event.seq}


@workflow(id="wb_on_event", trigger_on_event=TRIGGER_TOPIC)
async def wb_on_event(ctx: WorkflowContext, payload: Any = None) -> dict[str, Any]:
    return {"woke": await ctx.step.run("woke", stamp), "data": payload}


@workflow(id="wb_sleeper")
async def wb_sleeper(ctx: WorkflowContext, payload: dict[str, Any]) -> dict[str, float]:
    started = ctx.step.now("started")
    await ctx.step.sleep("nap", float(payload["seconds"]))
    woke = await ctx.step.run("woke", stamp)
    return {"started": started.timestamp(), "woke": woke, "seconds": float(payload["seconds"])}


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    max_concurrent = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    worker = Worker(
        client=PolosClient(),
        workflows=[wb_approve, wb_event_waiter, wb_on_event, wb_sleeper],
        max_concurrent=max_concurrent,
    )
    asyncio.run(worker.run())


if __name__ == "__main__":
    main()
