"""The DBOS side of the benchmarks, run in its own process (DBOS keeps global state).

Usage::

    python dbos_app.py latency    DB_URL RUNS     # prints one JSON line
    python dbos_app.py throughput DB_URL N        # prints one JSON line
    python dbos_app.py crash      DB_URL DIR start|recover

DB_URL is ``sqlite:///path.db`` or ``postgresql://user@host:port/db``. DBOS is configured
with it as its system database (``system_database_url``) and its defaults otherwise. Workflows and steps are ``async def`` (``@DBOS.workflow()``,
``@DBOS.step()``), the same shape as the Polos workers.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
from pathlib import Path

from dbos import DBOS, DBOSConfig


@DBOS.step()
async def noop_step() -> None:
    return None


@DBOS.workflow()
async def bench_latency() -> list[float]:
    durations: list[float] = []
    for _ in range(10):
        t0 = time.perf_counter()
        await noop_step()
        durations.append(time.perf_counter() - t0)
    return durations


@DBOS.workflow()
async def bench_throughput() -> int:
    await noop_step()
    await noop_step()
    await noop_step()
    return 3


@DBOS.step()
async def blocking_step(directory: str) -> str:
    folder = Path(directory)
    with open(folder / "started", "a") as fh:
        fh.write(f"{os.getpid()} {time.time()!r}\n")
    while not (folder / "release").exists():
        await asyncio.sleep(0.005)
    return "released"


@DBOS.workflow()
async def bench_crash(directory: str) -> str:
    await noop_step()
    out = await blocking_step(directory)
    await noop_step()
    return out


def _launch(db_url: str) -> None:
    config: DBOSConfig = {
        "name": "polos-bench",
        "system_database_url": db_url,
        "log_level": "WARNING",
    }
    DBOS(config=config)
    DBOS.launch()


async def latency(runs: int) -> dict[str, object]:
    await bench_latency()  # warm-up, not reported
    samples = [await bench_latency() for _ in range(runs)]
    return {"runs": samples}


async def throughput(n: int) -> dict[str, object]:
    warm = [await DBOS.start_workflow_async(bench_throughput) for _ in range(10)]
    for handle in warm:
        await handle.get_result()
    t0 = time.perf_counter()
    handles = await asyncio.gather(*(DBOS.start_workflow_async(bench_throughput) for _ in range(n)))
    t_started = time.perf_counter()
    results = await asyncio.gather(*(h.get_result() for h in handles))
    t1 = time.perf_counter()
    assert all(r == 3 for r in results), results
    return {"n": n, "seconds": t1 - t0, "start_seconds": t_started - t0}


async def crash(directory: str, mode: str) -> None:
    if mode == "start":
        handle = await DBOS.start_workflow_async(bench_crash, directory)
        await handle.get_result()
    # "recover": DBOS.launch() already queued recovery of this executor's pending
    # workflows; stay alive until the benchmark releases and stops us.
    folder = Path(directory)
    while not (folder / "done").exists():
        await asyncio.sleep(0.01)


async def amain(argv: list[str]) -> None:
    command, db_url = argv[0], argv[1]
    _launch(db_url)
    try:
        if command == "latency":
            print(json.dumps(await latency(int(argv[2]))), flush=True)
        elif command == "throughput":
            print(json.dumps(await throughput(int(argv[2]))), flush=True)
        elif command == "crash":
            await crash(argv[2], argv[3])
        else:
            raise SystemExit(f"unknown command {command!r}")
    finally:
        DBOS.destroy()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(amain(sys.argv[1:]))
