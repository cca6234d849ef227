"""The Polos worker used by the benchmarks: ``python polos_worker.py [max_concurrent]``.

It reads ``POLOS_API_URL`` (set by ``WorkerProcess``) and serves three workflows:

* ``bench_latency``: 10 sequential no-op async steps; returns each step's duration (s),
  measured inside the workflow with ``time.perf_counter()`` around ``ctx.step.run``.
* ``bench_throughput``: 3 sequential no-op async steps.
* ``bench_crash``: step 1 is a no-op; step 2 appends ``"<pid> <time.time()>"`` to
  ``<dir>/started`` when it starts, then blocks until ``<dir>/release`` exists; step 3 is a
  no-op. The benchmark kills the worker running step 2 and watches for another pid's line.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from polos import PolosClient, Worker, WorkflowContext, workflow


async def noop() -> None:
    return None


@workflow(id="bench_latency")
async def bench_latency(ctx: WorkflowContext, payload: Any = None) -> list[float]:
    durations: list[float] = []
    for i in range(10):
        t0 = time.perf_counter()
        await ctx.step.run(f"s{i}", noop)
        durations.append(time.perf_counter() - t0)
    return durations


@workflow(id="bench_throughput")
async def bench_throughput(ctx: WorkflowContext, payload: Any = None) -> int:
    await ctx.step.run("a", noop)
    await ctx.step.run("b", noop)
    await ctx.step.run("c", noop)
    return 3


async def blocking_step(directory: str) -> str:
    folder = Path(directory)
    with open(folder / "started", "a") as fh:
        fh.write(f"{os.getpid()} {time.time()!r}\n")
    while not (folder / "release").exists():
        await asyncio.sleep(0.005)
    return "released"


@workflow(id="bench_crash")
async def bench_crash(ctx: WorkflowContext, payload: dict[str, Any]) -> str:
    await ctx.step.run("one", noop)
    out = await ctx.step.run("two", blocking_step, payload["dir"])
    await ctx.step.run("three", noop)
    return str(out)


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    max_concurrent = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    worker = Worker(
        client=PolosClient(),
        workflows=[bench_latency, bench_throughput, bench_crash],
        max_concurrent=max_concurrent,
    )
    asyncio.run(worker.run())


if __name__ == "__main__":
    main()
