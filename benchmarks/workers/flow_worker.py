"""The Polos worker of ``flow_bench.py``: the same no-op workflow with and without a queue.

``python flow_worker.py [max_concurrent]``; reads ``POLOS_API_URL``. Workflows:

* ``plain``: one no-op step, no queue (the claim takes the no-limit path);
* ``limited``: the same, in queue ``bench-limited`` (concurrency limit 100,000, never
  reached: it measures the cost of checking a limit, not of waiting for one);
* ``keyed``: the same, in queue ``bench-keyed`` (limit 100,000, 10,000 per key);
* ``rated``: the same, in queue ``bench-rated`` (rate limit 1,000,000 starts per minute).

Each returns ``time.time()`` taken at the start of its step.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from datetime import timedelta

from polos import PolosClient, Queue, RateLimit, Worker, WorkflowContext, workflow

BIG = 100_000


async def stamp() -> float:
    return time.time()


@workflow(id="plain")
async def plain(ctx: WorkflowContext) -> float:
    return await ctx.step.run("stamp", stamp)


@workflow(id="limited", queue=Queue("bench-limited", concurrency_limit=BIG))
async def limited(ctx: WorkflowContext) -> float:
    return await ctx.step.run("stamp", stamp)


@workflow(id="keyed", queue=Queue("bench-keyed", concurrency_limit=BIG, per_key_limit=10_000))
async def keyed(ctx: WorkflowContext) -> float:
    return await ctx.step.run("stamp", stamp)


@workflow(
    id="rated",
    queue=Queue(
        "bench-rated", rate_limit=RateLimit("bench-starts", 1_000_000, timedelta(minutes=1))
    ),
)
async def rated(ctx: WorkflowContext) -> float:
    return await ctx.step.run("stamp", stamp)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    worker = Worker(
        PolosClient(),
        workflows=[plain, limited, keyed, rated],
        max_concurrent=int(sys.argv[1]) if len(sys.argv) > 1 else 1000,
    )
    asyncio.run(worker.run())
