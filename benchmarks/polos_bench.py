"""Polos side: a real orchestrator process and real worker processes, driven by a client.

Every scenario starts its own ``polos-server`` on a fresh database of ``store`` (a new
SQLite file in ``tmp``, or a new PostgreSQL database dropped afterwards).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from pathlib import Path
from typing import Any

from bench_common import WORKERS, Store, latency_summary, read_started, wait_until

from polos import PolosClient
from polos.testing import ServerProcess, WorkerProcess, wait_for_workers

WORKER_SCRIPT = WORKERS / "polos_worker.py"


def _server(tmp: Path, name: str, url: str) -> ServerProcess:
    return ServerProcess(url, log_path=tmp / f"{name}-server.log")


def _worker(
    server: ServerProcess, tmp: Path, name: str, max_concurrent: int = 1000
) -> WorkerProcess:
    return WorkerProcess(
        WORKER_SCRIPT,
        api_url=server.url,
        args=[str(max_concurrent)],
        log_path=tmp / f"{name}.log",
    )


# ---------------------------------------------------------------------- latency


async def _latency_runs(url: str, runs: int) -> list[list[float]]:
    async with PolosClient(url) as client:
        handle = await client.invoke("bench_latency")
        await handle.result(timeout=60)  # warm-up, not reported
        samples: list[list[float]] = []
        for _ in range(runs):
            handle = await client.invoke("bench_latency")
            samples.append(list(await handle.result(timeout=60)))
        return samples


def latency(tmp: Path, store: Store, runs: int) -> dict[str, Any]:
    """One worker; ``runs`` executions of a 10-step workflow, one after the other."""
    with (
        store.fresh(tmp, "polos-latency") as url,
        _server(tmp, "polos-latency", url) as server,
        _worker(server, tmp, "polos-latency-worker"),
    ):
        wait_for_workers(server.url, 1)
        samples = asyncio.run(_latency_runs(server.url, runs))
    return latency_summary(samples)


# ---------------------------------------------------------------------- throughput


async def _throughput(url: str, n: int, invoke_concurrency: int) -> dict[str, Any]:
    async with PolosClient(url) as client:
        warm = [await client.invoke("bench_throughput") for _ in range(10)]
        for handle in warm:
            await handle.result(timeout=60)

        gate = asyncio.Semaphore(invoke_concurrency)

        async def start() -> Any:
            async with gate:
                return await client.invoke("bench_throughput")

        async def finish(handle: Any) -> Any:
            async with gate:
                return await handle.result(timeout=300)

        t0 = time.perf_counter()
        handles = await asyncio.gather(*(start() for _ in range(n)))
        t_started = time.perf_counter()
        results = await asyncio.gather(*(finish(h) for h in handles))
        t1 = time.perf_counter()
        assert all(r == 3 for r in results), results[:5]
        return {"n": n, "seconds": t1 - t0, "start_seconds": t_started - t0}


async def _throughput_batch(url: str, n: int) -> dict[str, Any]:
    """Start all ``n`` with the batch API (1,000 per request) and wait with one long poll."""
    async with PolosClient(url) as client:
        warm = await client.invoke_many("bench_throughput", [None] * 10)
        await client.wait_many([h.id for h in warm], timeout=60)
        t0 = time.perf_counter()
        handles = await client.invoke_many("bench_throughput", [None] * n)
        t_started = time.perf_counter()
        done = await client.wait_many([h.id for h in handles], timeout=300)
        t1 = time.perf_counter()
        assert all(e.result == 3 for e in done), [e.status for e in done[:5]]
        return {"n": n, "seconds": t1 - t0, "start_seconds": t_started - t0}


def throughput(
    tmp: Path,
    store: Store,
    n: int,
    workers: int = 1,
    invoke_concurrency: int = 100,
    batch: bool = False,
) -> dict[str, Any]:
    """``n`` executions of a 3-step workflow invoked at once; ``workers`` worker processes.

    ``batch``: start them with ``invoke_many`` and wait with ``wait_many`` (two kinds of
    request in all) instead of one invoke and one result request per execution.
    """
    with store.fresh(tmp, "polos-throughput") as url:
        with _server(tmp, "polos-throughput", url) as server:
            procs = [
                _worker(server, tmp, f"polos-throughput-worker{i}", max_concurrent=1000).start()
                for i in range(workers)
            ]
            try:
                wait_for_workers(server.url, workers)
                result = asyncio.run(
                    _throughput_batch(server.url, n)
                    if batch
                    else _throughput(server.url, n, invoke_concurrency)
                )
            finally:
                for proc in procs:
                    proc.stop()
        result["server_span_seconds"] = _server_span(store, url, n)
    result.update(
        workers=workers,
        max_concurrent=1000,
        invoke_concurrency=invoke_concurrency,
        batch=batch,
        per_second=n / result["seconds"],
    )
    return result


def _server_span(store: Store, url: str, n: int) -> float | None:
    """From the orchestrator's own timestamps: first created -> last completed (informative).

    Reads the (internal) executions table; None if its layout is not what this expects.
    """
    try:
        rows = store.query(
            url,
            "SELECT created_at, completed_at FROM executions "
            "WHERE workflow_id = 'bench_throughput' ORDER BY created_at DESC LIMIT ?",
            (n,),
        )
    except Exception:
        return None
    if len(rows) != n or any(done is None for _, done in rows):
        return None
    span_ms = max(int(done) for _, done in rows) - min(int(created) for created, _ in rows)
    return span_ms / 1000


# ---------------------------------------------------------------------- crash to resume


def crash(tmp: Path, store: Store, rounds: int, timeout: float = 30.0) -> dict[str, Any]:
    """Two idle workers; the one running step 2 is killed; time until the other re-runs it.

    Measured: ``time.time()`` just before SIGKILL -> ``time.time()`` written by the
    surviving worker when the re-run of step 2 begins (same machine, same clock).
    """
    delays: list[float] = []
    failures = 0
    with store.fresh(tmp, "polos-crash") as url, _server(tmp, "polos-crash", url) as server:
        workers: dict[int, WorkerProcess] = {}
        serial = 0

        def spawn() -> None:
            nonlocal serial
            serial += 1
            proc = _worker(server, tmp, f"polos-crash-worker{serial}", max_concurrent=100).start()
            workers[proc.pid] = proc

        spawn()
        spawn()
        try:
            client = PolosClient(server.url)
            for i in range(rounds):
                wait_for_workers(server.url, 2)
                time.sleep(0.2)  # both idle and settled
                folder = tmp / f"polos-crash-{i}"
                folder.mkdir()
                started = folder / "started"
                handle = client.invoke_sync("bench_crash", {"dir": str(folder)})
                if not wait_until(lambda p=started: len(read_started(p)) >= 1, timeout):
                    raise RuntimeError("the crash workflow never reached step 2")
                victim_pid = read_started(started)[0][0]
                victim = workers.pop(victim_pid)
                t_kill = time.time()
                victim.kill()
                resumed = wait_until(
                    lambda p=started, v=victim_pid: any(pid != v for pid, _ in read_started(p)),
                    timeout,
                )
                if resumed:
                    t_resume = next(t for pid, t in read_started(started) if pid != victim_pid)
                    delays.append(t_resume - t_kill)
                else:
                    failures += 1
                (folder / "release").touch()
                handle.result_sync(timeout=timeout)
                spawn()
        finally:
            for proc in workers.values():
                proc.stop()
    return {
        "rounds": rounds,
        "failures": failures,
        "delays_s": delays,
        "median_s": statistics.median(delays) if delays else float("nan"),
        "max_s": max(delays) if delays else float("nan"),
    }
