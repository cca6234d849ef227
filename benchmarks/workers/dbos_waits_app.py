"""DBOS side of the waits benchmark, in its own process (DBOS keeps global state).

Usage::

    python dbos_waits_app.py resume DB_URL WARMUP RUNS        # prints one JSON line
    python dbos_waits_app.py sleep  DB_URL SECONDS N ROUNDS   # prints one JSON line

DB_URL is ``sqlite:///path.db`` or ``postgresql://user@host:port/db``, DBOS's system
database (its defaults otherwise), as in ``dbos_app.py``.

* ``resume``: the counterpart of Polos's suspend/resume is ``DBOS.recv`` / ``DBOS.send``.
  WARMUP + RUNS workflows wait in ``DBOS.recv_async("approval")``; each is sent a message
  in turn (``DBOS.send_async`` from outside a workflow, in this process), and its next
  step stamps ``time.time()``; measured from just before the send to that stamp.
* ``sleep``: ROUNDS x N workflows started together, each stamps ``time.time()`` right
  before ``DBOS.sleep_async(SECONDS)`` (which fixes the wake-up time when called) and again
  in the step after it; lateness = second stamp - (first + SECONDS). DBOS sleeps in
  process whatever the duration (its workflows never park).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time

from dbos import DBOS, DBOSConfig


@DBOS.step()
async def stamp() -> float:
    return time.time()


@DBOS.workflow()
async def wb_approve() -> float:
    await DBOS.recv_async("approval", timeout_seconds=600)
    return await stamp()


@DBOS.workflow()
async def wb_sleeper(seconds: float) -> dict[str, float]:
    started = time.time()
    await DBOS.sleep_async(seconds)
    return {"started": started, "woke": await stamp()}


def _launch(db_url: str) -> None:
    config: DBOSConfig = {
        "name": "polos-waits-bench",
        "system_database_url": db_url,
        "log_level": "WARNING",
    }
    DBOS(config=config)
    DBOS.launch()


async def resume(warmup: int, runs: int) -> dict[str, object]:
    handles = [await DBOS.start_workflow_async(wb_approve) for _ in range(warmup + runs)]
    await asyncio.sleep(1.0)  # every one reaches its recv
    latencies: list[float] = []
    calls: list[float] = []
    for i, handle in enumerate(handles):
        t0 = time.time()
        await DBOS.send_async(handle.get_workflow_id(), {"ok": True}, "approval")
        t_call = time.time()
        woke = await handle.get_result()
        if i >= warmup:
            latencies.append(woke - t0)
            calls.append(t_call - t0)
    return {"latencies_s": latencies, "send_s": calls}


async def sleep(seconds: float, n: int, rounds: int) -> dict[str, object]:
    warm = await DBOS.start_workflow_async(wb_sleeper, 0.01)
    await warm.get_result()
    lateness: list[float] = []
    for _ in range(rounds):
        handles = await asyncio.gather(
            *(DBOS.start_workflow_async(wb_sleeper, seconds) for _ in range(n))
        )
        for out in await asyncio.gather(*(h.get_result() for h in handles)):
            lateness.append(out["woke"] - (out["started"] + seconds))
    return {"lateness_s": lateness}


async def amain(argv: list[str]) -> None:
    command, db_url = argv[0], argv[1]
    _launch(db_url)
    try:
        if command == "resume":
            print(json.dumps(await resume(int(argv[2]), int(argv[3]))), flush=True)
        elif command == "sleep":
            out = await sleep(float(argv[2]), int(argv[3]), int(argv[4]))
            print(json.dumps(out), flush=True)
        else:
            raise SystemExit(f"unknown command {command!r}")
    finally:
        DBOS.destroy()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(amain(sys.argv[1:]))
