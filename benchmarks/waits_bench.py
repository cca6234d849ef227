"""Waits, events and timers: Polos on SQLite and PostgreSQL, side by side.

Usage::

    python benchmarks/waits_bench.py            # full: 50 runs each, 3 x 20 sleepers, 10,000 parked
    python benchmarks/waits_bench.py --quick    # quick: 15 runs each, 1 x 10 sleepers, 2,000 parked
    python benchmarks/waits_bench.py --store sqlite|postgres|both   # default: both

Scenarios (each on a fresh database with its own ``polos-server`` and one worker process,
``workers/waits_worker.py``):

1. resume latency: ``time.time()`` just before ``client.resume(...)`` -> ``time.time()``
   taken by the first step after ``ctx.step.suspend`` (same machine, same clock);
2. event latency: just before ``client.events.publish(...)`` -> first step of the
   execution it triggered (``trigger_on_event``); and -> first step after a
   ``ctx.step.wait_for_event`` on that topic;
3. timer lateness: sleepers of D seconds started together; lateness = first step after
   the sleep - (``ctx.step.now`` before the sleep + D); D = 6 s (parked, fired by the
   orchestrator's timer loop) and D = 1 s (in-process);
4. idle cost: worker and orchestrator RSS before/after N executions park at a suspend;
   listing them all (``list_waits``, 500 per page); resuming 1,000 of them.

Optional DBOS rows (``workers/dbos_waits_app.py``; ``--no-dbos`` skips them): DBOS.send ->
the step after DBOS.recv, and DBOS.sleep lateness, stamped the same way.

Prints one table (a column per store) and writes ``benchmarks/results/waits-latest.json``.
See benchmarks/README.md ("Waits, events and timers") for the method.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_common import DEFAULT_PG_URL, STORES, WORKERS, Store, percentile

import polos
from polos import PolosClient
from polos.testing import ServerProcess, WorkerProcess, wait_for_workers

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
WORKER_SCRIPT = WORKERS / "waits_worker.py"
DBOS_APP = WORKERS / "dbos_waits_app.py"
TRIGGER_TOPIC = "wbench/trigger"  # the worker's wb_on_event listens to it

STORE_TITLES = {"sqlite": "SQLite", "postgres": "PostgreSQL"}

MODES: dict[str, dict[str, Any]] = {
    "quick": {
        "latency_runs": 15,
        "timer_rounds": 1,
        "sleepers": 10,
        "parked": 2000,
        "resumed": 1000,
    },
    "full": {
        "latency_runs": 50,
        "timer_rounds": 3,
        "sleepers": 20,
        "parked": 10000,
        "resumed": 1000,
    },
}
WARMUP_RUNS = 3  # latency runs before the reported ones (connections, first-use imports)
LONG_SLEEP_S = 6.0  # > POLOS_WAIT_THRESHOLD_SECONDS (5): the execution parks
SHORT_SLEEP_S = 1.0  # in-process sleep in the worker
CHUNK = 1000  # invoke_many chunk for the idle scenario
LIST_PAGE = 500  # list_waits page size
RESUME_CONCURRENCY = 100  # resume calls in flight in the idle scenario

# Targets from the issue.
TARGETS = {
    "resume_ms": 50.0,  # resume -> next step running, median
    "trigger_ms": 50.0,  # publish -> triggered execution's first step, median
    "timer_lateness_ms": 100.0,  # parked sleep lateness, median
    "idle_worker_mib": 10.0,  # worker RSS added by the parked executions
}


# ---------------------------------------------------------------------- helpers


def summary_ms(values_s: Sequence[float]) -> dict[str, Any]:
    """Median, p90, min, max and mean (ms) of durations in seconds, plus the raw values."""
    ms = [v * 1000 for v in values_s]
    if not ms:
        return {"n": 0, "median_ms": float("nan"), "p90_ms": float("nan")}
    return {
        "n": len(ms),
        "median_ms": statistics.median(ms),
        "p90_ms": percentile(ms, 90),
        "min_ms": min(ms),
        "max_ms": max(ms),
        "mean_ms": statistics.fmean(ms),
        "values_ms": [round(v, 3) for v in ms],
    }


def proc_memory(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (peak RSS) of a process, in MiB, from /proc/<pid>/status."""
    out: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            out[name] = int(value.split()[0]) / 1024  # kB -> MiB
    return {"rss_mib": out.get("VmRSS", float("nan")), "hwm_mib": out.get("VmHWM", float("nan"))}


class Counter:
    """Counts rows of the orchestrator's (internal) ``waits`` table on one open connection.

    Only used to know when executions have parked; the benchmark's numbers come from the
    workflows' own stamps and the client API.
    """

    def __init__(self, store: Store, url: str) -> None:
        self.kind = store.kind
        if store.kind == "sqlite":
            path = url.removeprefix("sqlite:///")
            self.conn: Any = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        else:
            import psycopg

            self.conn = psycopg.connect(url, autocommit=True)

    def waits(self, kind: str) -> int:
        sql = "SELECT count(*) FROM waits WHERE kind = " + ("?" if self.kind == "sqlite" else "%s")
        return int(self.conn.execute(sql, (kind,)).fetchone()[0])

    def wait_for(self, kind: str, count: int, timeout: float = 300.0) -> float:
        """Poll until ``count`` waits of ``kind`` exist; seconds it took."""
        t0 = time.perf_counter()
        deadline = time.monotonic() + timeout
        while self.waits(kind) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"only {self.waits(kind)} of {count} {kind} waits after {timeout} s"
                )
            time.sleep(0.02)
        return time.perf_counter() - t0

    def close(self) -> None:
        self.conn.close()


@contextlib.contextmanager
def polos_stack(
    tmp: Path, store: Store, name: str, max_concurrent: int = 1000
) -> Iterator[tuple[ServerProcess, WorkerProcess, Counter, str]]:
    """A fresh database, an orchestrator on it and one connected worker process."""
    with (
        store.fresh(tmp, f"polos-{name}") as url,
        ServerProcess(url, log_path=tmp / f"{name}-server.log") as server,
        WorkerProcess(
            WORKER_SCRIPT,
            api_url=server.url,
            args=[str(max_concurrent)],
            log_path=tmp / f"{name}-worker.log",
        ) as worker,
    ):
        wait_for_workers(server.url, 1)
        counter = Counter(store, url)
        try:
            yield server, worker, counter, url
        finally:
            counter.close()


# ---------------------------------------------------------------------- 1. resume latency


async def _resume_runs(url: str, counter: Counter, runs: int) -> dict[str, Any]:
    async with PolosClient(url) as client:
        total = WARMUP_RUNS + runs
        handles = await client.invoke_many("wb_approve", [None] * total)
        counter.wait_for("suspend", total)
        latencies: list[float] = []
        calls: list[float] = []
        for i, handle in enumerate(handles):
            t0 = time.time()
            await client.resume(handle.id, "approval")
            t_call = time.time()
            woke = (await handle.result(timeout=60))["woke"]
            if i >= WARMUP_RUNS:
                latencies.append(woke - t0)
                calls.append(t_call - t0)
        return {
            "resume_to_next_step": summary_ms(latencies),
            "resume_call": summary_ms(calls),
        }


def resume_latency(tmp: Path, store: Store, runs: int) -> dict[str, Any]:
    """``runs`` suspended executions resumed one after the other (each awaited)."""
    with polos_stack(tmp, store, "resume") as (server, _worker, counter, _url):
        return asyncio.run(_resume_runs(server.url, counter, runs))


# ---------------------------------------------------------------------- 2. events


async def _event_runs(url: str, counter: Counter, runs: int) -> dict[str, Any]:
    async with PolosClient(url) as client:
        total = WARMUP_RUNS + runs
        # (a) publish -> first step of the execution the event triggered
        trigger: list[float] = []
        publish_calls: list[float] = []
        for i in range(total):
            t0 = time.time()
            published = await client.events.publish(TRIGGER_TOPIC, {"i": i})
            t_call = time.time()
            if len(published.triggered) != 1:
                raise RuntimeError(f"publish triggered {published.triggered}, expected one")
            woke = (await client.result(published.triggered[0], timeout=60))["woke"]
            if i >= WARMUP_RUNS:
                trigger.append(woke - t0)
                publish_calls.append(t_call - t0)

        # (b) publish -> first step after wait_for_event (one topic per waiter)
        topics = [f"wbench/wake/{i}" for i in range(total)]
        handles = await client.invoke_many("wb_event_waiter", [{"topic": t} for t in topics])
        counter.wait_for("event", total)
        wake: list[float] = []
        for i, (topic, handle) in enumerate(zip(topics, handles, strict=True)):
            t0 = time.time()
            await client.events.publish(topic, {"i": i})
            woke = (await handle.result(timeout=60))["woke"]
            if i >= WARMUP_RUNS:
                wake.append(woke - t0)
        return {
            "publish_to_triggered_start": summary_ms(trigger),
            "publish_call": summary_ms(publish_calls),
            "publish_to_wait_wakeup": summary_ms(wake),
        }


def event_latency(tmp: Path, store: Store, runs: int) -> dict[str, Any]:
    """Events published one after the other; each execution awaited before the next."""
    with polos_stack(tmp, store, "events") as (server, _worker, counter, _url):
        return asyncio.run(_event_runs(server.url, counter, runs))


# ---------------------------------------------------------------------- 3. timers


async def _sleep_rounds(url: str, seconds: float, n: int, rounds: int) -> list[float]:
    lateness: list[float] = []
    async with PolosClient(url) as client:
        for _ in range(rounds):
            handles = await client.invoke_many("wb_sleeper", [{"seconds": seconds}] * n)
            done = await client.wait_many([h.id for h in handles], timeout=seconds + 120)
            for execution in done:
                out = client.result_of(execution)
                lateness.append(out["woke"] - (out["started"] + out["seconds"]))
    return lateness


def timers(tmp: Path, store: Store, n: int, rounds: int) -> dict[str, Any]:
    """``rounds`` x ``n`` sleepers started together, D = 1 s (in-process) then D = 6 s."""
    with polos_stack(tmp, store, "timers") as (server, _worker, _counter, _url):
        # warm-up: one short sleeper
        asyncio.run(_sleep_rounds(server.url, 0.01, 1, 1))
        short = asyncio.run(_sleep_rounds(server.url, SHORT_SLEEP_S, n, rounds))
        long = asyncio.run(_sleep_rounds(server.url, LONG_SLEEP_S, n, rounds))
    return {
        "concurrent": n,
        "rounds": rounds,
        "short": {"seconds": SHORT_SLEEP_S, **summary_ms(short)},
        "long": {"seconds": LONG_SLEEP_S, **summary_ms(long)},
    }


# ---------------------------------------------------------------------- 4. idle cost


async def _park_and_resume(client: PolosClient, counter: Counter, n: int) -> None:
    """Park ``n`` executions at once, resume them all and wait until they completed."""
    handles = await client.invoke_many("wb_approve", [None] * n)
    counter.wait_for("suspend", n)
    gate = asyncio.Semaphore(RESUME_CONCURRENCY)

    async def resume(handle: Any) -> None:
        async with gate:
            await client.resume(handle.id, "approval")

    await asyncio.gather(*(resume(h) for h in handles))
    await client.wait_many([h.id for h in handles], timeout=300)
    if counter.waits("suspend") != 0:
        raise RuntimeError("warm-up executions are still parked")


def _settled_memory(pid: int, settle: float = 2.0) -> dict[str, float]:
    time.sleep(settle)
    return proc_memory(pid)


async def _idle(
    url: str,
    counter: Counter,
    worker_pid: int,
    server_pid: int,
    parked: int,
    resumed: int,
) -> dict[str, Any]:
    async with PolosClient(url) as client:
        # warm-up 1: park and resume a few, so that every code path ran once
        await _park_and_resume(client, counter, 20)
        fresh = {"worker": _settled_memory(worker_pid), "server": proc_memory(server_pid)}
        # warm-up 2: one chunk of CHUNK, parked at once and resumed: the worker has then
        # run CHUNK executions concurrently, as it does for each chunk below
        await _park_and_resume(client, counter, CHUNK)
        before = {"worker": _settled_memory(worker_pid), "server": proc_memory(server_pid)}

        handles = []
        series: list[dict[str, Any]] = []
        t0 = time.perf_counter()
        for start in range(0, parked, CHUNK):
            size = min(CHUNK, parked - start)
            handles += await client.invoke_many("wb_approve", [None] * size)
            counter.wait_for("suspend", start + size)
            series.append(
                {
                    "parked": start + size,
                    "worker_rss_mib": proc_memory(worker_pid)["rss_mib"],
                    "server_rss_mib": proc_memory(server_pid)["rss_mib"],
                }
            )
        park_seconds = time.perf_counter() - t0

        after = {"worker": _settled_memory(worker_pid), "server": proc_memory(server_pid)}

        # list every wait, 500 per page
        listed = 0
        pages = 0
        cursor = None
        t0 = time.perf_counter()
        while True:
            page = await client.list_waits(kind="suspend", limit=LIST_PAGE, cursor=cursor)
            listed += len(page.items)
            pages += 1
            cursor = page.next_cursor
            if cursor is None:
                break
        list_seconds = time.perf_counter() - t0
        if listed != parked:
            raise RuntimeError(f"list_waits returned {listed} waits, expected {parked}")

        # resume `resumed` of them, RESUME_CONCURRENCY calls in flight
        chosen = handles[:resumed]
        gate = asyncio.Semaphore(RESUME_CONCURRENCY)

        async def resume(handle: Any) -> None:
            async with gate:
                await client.resume(handle.id, "approval", {"ok": True})

        t0 = time.perf_counter()
        await asyncio.gather(*(resume(h) for h in chosen))
        t_calls = time.perf_counter() - t0
        done = await client.wait_many([h.id for h in chosen], timeout=300)
        t_done = time.perf_counter() - t0
        if any(e.status != "completed" for e in done):
            raise RuntimeError("some resumed executions did not complete")

        after_resume = {"worker": _settled_memory(worker_pid), "server": proc_memory(server_pid)}

    return {
        "parked": parked,
        "chunk": CHUNK,
        "park_seconds": park_seconds,
        "memory_fresh": fresh,
        "memory_before": before,
        "memory_parked": after,
        "memory_after_resume": after_resume,
        "memory_series": series,
        "worker_added_mib": after["worker"]["rss_mib"] - before["worker"]["rss_mib"],
        "server_added_mib": after["server"]["rss_mib"] - before["server"]["rss_mib"],
        "worker_added_from_fresh_mib": after["worker"]["rss_mib"] - fresh["worker"]["rss_mib"],
        "server_added_from_fresh_mib": after["server"]["rss_mib"] - fresh["server"]["rss_mib"],
        "list": {"page_size": LIST_PAGE, "pages": pages, "listed": listed, "seconds": list_seconds},
        "resume": {
            "n": resumed,
            "concurrency": RESUME_CONCURRENCY,
            "calls_seconds": t_calls,
            "calls_per_second": resumed / t_calls,
            "all_completed_seconds": t_done,
            "completed_per_second": resumed / t_done,
        },
    }


def idle_cost(
    tmp: Path, store: Store, parked: int, resumed: int, slots: int = 1000
) -> dict[str, Any]:
    """``parked`` executions park at a suspend (invoke_many, 1,000 per chunk).

    ``slots``: the worker's ``max_concurrent`` (how many executions it runs at once).
    """
    with polos_stack(tmp, store, "idle", max_concurrent=slots) as (server, worker, counter, _):
        out = asyncio.run(_idle(server.url, counter, worker.pid, server.pid, parked, resumed))
    out["worker_max_concurrent"] = slots
    return out


# ---------------------------------------------------------------------- DBOS (optional)


def _dbos_app(tmp: Path, store: Store, name: str, *args: str) -> dict[str, Any]:
    """Run ``dbos_waits_app.py`` on a fresh database; its JSON line."""
    with store.fresh(tmp, name) as url:
        proc = subprocess.run(
            [sys.executable, str(DBOS_APP), args[0], url, *args[1:]],
            cwd=tmp,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    (tmp / f"{name}.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise RuntimeError(f"DBOS {name} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    out: dict[str, Any] = json.loads(
        [ln for ln in proc.stdout.splitlines() if ln.startswith("{")][-1]
    )
    return out


def dbos_waits(tmp: Path, store: Store, runs: int, n: int, rounds: int) -> dict[str, Any]:
    """DBOS's closest primitives: send -> recv, and DBOS.sleep (same stamps as Polos)."""
    resume = _dbos_app(tmp, store, "dbos-resume", "resume", str(WARMUP_RUNS), str(runs))
    short = _dbos_app(
        tmp, store, "dbos-sleep-short", "sleep", str(SHORT_SLEEP_S), str(n), str(rounds)
    )
    long = _dbos_app(tmp, store, "dbos-sleep-long", "sleep", str(LONG_SLEEP_S), str(n), str(rounds))
    return {
        "send_to_next_step": summary_ms(resume["latencies_s"]),
        "send_call": summary_ms(resume["send_s"]),
        "short": {"seconds": SHORT_SLEEP_S, **summary_ms(short["lateness_s"])},
        "long": {"seconds": LONG_SLEEP_S, **summary_ms(long["lateness_s"])},
    }


# ---------------------------------------------------------------------- driver


def run_store(
    mode: str, store: Store, tmp: Path, idle_slots: int = 1000, with_dbos: bool = True
) -> dict[str, Any]:
    cfg = MODES[mode]
    wall: dict[str, float] = {}
    loadavg_at_start = [round(x, 2) for x in os.getloadavg()]

    def step(name: str, fn: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
        print(f"  [{store}] {name} ...", end="", flush=True)
        folder = tmp / str(store) / name
        folder.mkdir(parents=True)
        t0 = time.perf_counter()
        out = fn(folder, store, *args)
        wall[name] = time.perf_counter() - t0
        print(f" {wall[name]:.1f} s", flush=True)
        return out

    results: dict[str, Any] = {
        "resume": step("resume", resume_latency, cfg["latency_runs"]),
        "events": step("events", event_latency, cfg["latency_runs"]),
        "timers": step("timers", timers, cfg["sleepers"], cfg["timer_rounds"]),
        "idle": step("idle", idle_cost, cfg["parked"], cfg["resumed"], idle_slots),
    }
    if with_dbos:
        results["dbos"] = step(
            "dbos", dbos_waits, cfg["latency_runs"], cfg["sleepers"], cfg["timer_rounds"]
        )
    resume_ms = results["resume"]["resume_to_next_step"]["median_ms"]
    trigger_ms = results["events"]["publish_to_triggered_start"]["median_ms"]
    late_ms = results["timers"]["long"]["median_ms"]
    idle_mib = results["idle"]["worker_added_mib"]
    idle_fresh_mib = results["idle"]["worker_added_from_fresh_mib"]
    results["targets"] = {
        "resume_median_under_50ms": {
            "target": f"median < {TARGETS['resume_ms']:g} ms",
            "value": resume_ms,
            "met": resume_ms < TARGETS["resume_ms"],
        },
        "trigger_median_under_50ms": {
            "target": f"median < {TARGETS['trigger_ms']:g} ms",
            "value": trigger_ms,
            "met": trigger_ms < TARGETS["trigger_ms"],
        },
        "timer_lateness_median_under_100ms": {
            "target": f"median < {TARGETS['timer_lateness_ms']:g} ms",
            "value": late_ms,
            "met": late_ms < TARGETS["timer_lateness_ms"],
        },
        "idle_worker_under_10mb": {
            "target": f"< {TARGETS['idle_worker_mib']:g} MiB added to the warmed-up worker",
            "value": idle_mib,
            "met": idle_mib < TARGETS["idle_worker_mib"],
        },
        "idle_worker_under_10mb_from_fresh": {
            "target": f"< {TARGETS['idle_worker_mib']:g} MiB added to a fresh worker",
            "value": idle_fresh_mib,
            "met": idle_fresh_mib < TARGETS["idle_worker_mib"],
        },
    }
    results["store"] = str(store)
    results["wall_seconds"] = wall
    results["loadavg_at_start"] = loadavg_at_start
    results["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return results


def _src_sha1() -> str:
    """A hash of the measured ``src/`` (every .py file's path and bytes), without git."""
    digest = hashlib.sha1()
    src = Path(polos.__file__).resolve().parent
    for path in sorted(src.rglob("*.py")):
        digest.update(str(path.relative_to(src)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def environment() -> dict[str, Any]:
    mem_gib = float("nan")
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = int(line.split()[1]) / 1024 / 1024
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "memory_gib": round(mem_gib, 1),
        "polos": polos.__version__,
        "polos_path": str(Path(polos.__file__).parent),
        "polos_src_sha1": _src_sha1(),
        "psycopg": metadata.version("psycopg"),
        "wait_threshold_s": os.environ.get("POLOS_WAIT_THRESHOLD_SECONDS", "5"),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def _lat(r: dict[str, Any]) -> str:
    return f"{r['median_ms']:.1f} / {r['p90_ms']:.1f}"


def _mem(r: dict[str, Any], who: str, start: str, added: str) -> str:
    idle = r["idle"]
    return (
        f"{idle[start][who]['rss_mib']:.1f} -> {idle['memory_parked'][who]['rss_mib']:.1f} "
        f"(+{idle[added]:.1f})"
    )


def table(per_store: dict[str, dict[str, Any]], cfg: dict[str, Any]) -> str:
    names = list(per_store)

    def cells(fn: Callable[[dict[str, Any]], str]) -> list[str]:
        return [fn(per_store[n]) for n in names]

    def met(key: str) -> str:
        return " / ".join(
            ("met" if per_store[n]["targets"][key]["met"] else "NOT met") for n in names
        )

    n_parked = f"{cfg['parked']:,}"
    rows: list[list[str]] = [
        [
            "Resume -> next step, median / p90 (ms)",
            *cells(lambda r: _lat(r["resume"]["resume_to_next_step"])),
            f"median < 50 ms: {met('resume_median_under_50ms')}",
        ],
        [
            "  resume call round trip (ms)",
            *cells(lambda r: _lat(r["resume"]["resume_call"])),
            "-",
        ],
        [
            "  DBOS: send -> step after recv (ms)",
            *cells(lambda r: _lat(r["dbos"]["send_to_next_step"]) if "dbos" in r else "-"),
            "-",
        ],
        [
            "Publish -> triggered execution's 1st step (ms)",
            *cells(lambda r: _lat(r["events"]["publish_to_triggered_start"])),
            f"median < 50 ms: {met('trigger_median_under_50ms')}",
        ],
        [
            "  publish call round trip (ms)",
            *cells(lambda r: _lat(r["events"]["publish_call"])),
            "-",
        ],
        [
            "Publish -> step after wait_for_event (ms)",
            *cells(lambda r: _lat(r["events"]["publish_to_wait_wakeup"])),
            "-",
        ],
        [
            f"Timer lateness, {LONG_SLEEP_S:g} s sleep, parked (ms)",
            *cells(lambda r: _lat(r["timers"]["long"])),
            f"median < 100 ms: {met('timer_lateness_median_under_100ms')}",
        ],
        [
            f"Timer lateness, {SHORT_SLEEP_S:g} s sleep, in-process (ms)",
            *cells(lambda r: _lat(r["timers"]["short"])),
            "-",
        ],
        [
            f"  DBOS: DBOS.sleep {LONG_SLEEP_S:g} s lateness, in-process (ms)",
            *cells(lambda r: _lat(r["dbos"]["long"]) if "dbos" in r else "-"),
            "-",
        ],
        [
            f"  DBOS: DBOS.sleep {SHORT_SLEEP_S:g} s lateness, in-process (ms)",
            *cells(lambda r: _lat(r["dbos"]["short"]) if "dbos" in r else "-"),
            "-",
        ],
        [
            f"Worker RSS, warmed up -> {n_parked} parked (MiB) [*]",
            *cells(lambda r: _mem(r, "worker", "memory_before", "worker_added_mib")),
            f"< 10 MB added: {met('idle_worker_under_10mb')}",
        ],
        [
            f"Worker RSS, fresh -> {n_parked} parked (MiB) [*]",
            *cells(lambda r: _mem(r, "worker", "memory_fresh", "worker_added_from_fresh_mib")),
            f"< 10 MB added: {met('idle_worker_under_10mb_from_fresh')}",
        ],
        [
            f"Orchestrator RSS, warmed up -> {n_parked} parked (MiB)",
            *cells(lambda r: _mem(r, "server", "memory_before", "server_added_mib")),
            "-",
        ],
        [
            f"Orchestrator RSS, fresh -> {n_parked} parked (MiB)",
            *cells(lambda r: _mem(r, "server", "memory_fresh", "server_added_from_fresh_mib")),
            "-",
        ],
        [
            f"Park {n_parked} (invoke_many x 1,000 -> all parked) (s)",
            *cells(lambda r: f"{r['idle']['park_seconds']:.2f}"),
            "-",
        ],
        [
            f"list_waits, all {n_parked}, {LIST_PAGE} per page (s)",
            *cells(lambda r: f"{r['idle']['list']['seconds']:.3f}"),
            "-",
        ],
        [
            f"Resume {cfg['resumed']:,} of them: calls/s ({RESUME_CONCURRENCY} in flight)",
            *cells(lambda r: f"{r['idle']['resume']['calls_per_second']:.0f}"),
            "-",
        ],
        [
            f"Resume {cfg['resumed']:,}: until all completed (s)",
            *cells(lambda r: f"{r['idle']['resume']['all_completed_seconds']:.2f}"),
            "-",
        ],
    ]
    header = ["Metric", *(STORE_TITLES[n] for n in names), "Target"]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def fmt(row: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"

    lines = [fmt(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += [fmt(row) for row in rows]
    lines.append("")
    lines.append(
        f"Latencies: {cfg['latency_runs']} runs each after {WARMUP_RUNS} warm-up runs, one at a "
        "time; median / p90 over runs. Timers: "
        f"{cfg['timer_rounds']} round(s) of {cfg['sleepers']} sleepers started together "
        "(invoke_many); lateness = first step after the sleep - (ctx.step.now before it + D)."
    )
    lines.append(
        f"[*] worker max_concurrent={cfg['idle_slots']}. fresh: the worker after 20 executions "
        f"parked and resumed; warmed up: after one more chunk of {CHUNK:,} parked at once and "
        "resumed (the worker has then run as many at once as it does for every chunk that "
        "follows). Worker RSS after each chunk:"
    )
    for n in names:
        r = per_store[n]
        series = ", ".join(f"{p['worker_rss_mib']:.1f}" for p in r["idle"]["memory_series"])
        lines.append(f"    {STORE_TITLES[n]}: {series} MiB")
    for n in names:
        r = per_store[n]
        lines.append(
            f"{STORE_TITLES[n]}: load average {r['loadavg_at_start'][0]} -> "
            f"{r['loadavg_at_end'][0]}; peak worker RSS (VmHWM) "
            f"{r['idle']['memory_parked']['worker']['hwm_mib']:.1f} MiB; worker RSS after "
            f"resuming {cfg['resumed']:,}: "
            f"{r['idle']['memory_after_resume']['worker']['rss_mib']:.1f} MiB."
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs, 2,000 parked")
    parser.add_argument("--store", choices=[*STORES, "both"], default="both")
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("POLOS_BENCH_PG_URL", DEFAULT_PG_URL),
        help="an existing PostgreSQL database to connect to for CREATE/DROP DATABASE "
        f"(default: $POLOS_BENCH_PG_URL or {DEFAULT_PG_URL})",
    )
    parser.add_argument(
        "--idle-slots",
        type=int,
        default=1000,
        help="max_concurrent of the idle scenario's worker (1000, like the other benchmarks)",
    )
    parser.add_argument(
        "--no-dbos", action="store_true", help="skip the DBOS rows (send/recv, DBOS.sleep)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, dbs)")
    parser.add_argument("--output", type=Path, default=RESULTS / "waits-latest.json")
    args = parser.parse_args()
    mode = "quick" if args.quick else "full"
    cfg = MODES[mode]
    stores = [
        Store(kind, args.pg_url) for kind in (STORES if args.store == "both" else [args.store])
    ]
    env = environment()
    env["stores"] = {str(s): {"version": s.check(), "settings": s.settings()} for s in stores}
    on = ", ".join(f"{STORE_TITLES[k]} {v['version']}" for k, v in env["stores"].items())
    print(
        f"Polos {env['polos']} waits/events/timers on {on}; {env['cpus']} CPUs, "
        f"{env['memory_gib']} GiB; Python {env['python']}; mode {mode}"
    )
    load = env["loadavg_at_start"][0]
    if load > 0.5 * (env["cpus"] or 1):
        print(f"WARNING: load average {load} before starting: numbers are pessimistic.")

    tmp = Path(tempfile.mkdtemp(prefix="polos-waits-bench-"))
    started = time.perf_counter()
    per_store: dict[str, dict[str, Any]] = {}
    try:
        for store in stores:
            per_store[str(store)] = run_store(
                mode, store, tmp, args.idle_slots, with_dbos=not args.no_dbos
            )
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    env["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    results = {
        "config": {
            "mode": mode,
            **cfg,
            "warmup_runs": WARMUP_RUNS,
            "long_sleep_s": LONG_SLEEP_S,
            "short_sleep_s": SHORT_SLEEP_S,
            "list_page": LIST_PAGE,
            "resume_concurrency": RESUME_CONCURRENCY,
            "idle_worker_max_concurrent": args.idle_slots,
        },
        "targets": TARGETS,
        "stores": per_store,
        "environment": env,
        "total_seconds": time.perf_counter() - started,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    print()
    print(table(per_store, {**cfg, "idle_slots": args.idle_slots}))
    print()
    print("Targets:")
    for name, r in per_store.items():
        missed = [k for k, v in r["targets"].items() if not v["met"]]
        verdict = "all met" if not missed else "NOT met: " + ", ".join(missed)
        print(f"  {STORE_TITLES[name]}: {verdict}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"\nTotal {results['total_seconds']:.0f} s; results written to {args.output}")


if __name__ == "__main__":
    main()
