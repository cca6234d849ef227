"""DBOS side: each scenario runs ``workers/dbos_app.py`` in a subprocess on a fresh database.

The system database is a new SQLite file, or a new PostgreSQL database (created here,
so DBOS finds it existing, and dropped afterwards).
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench_common import WORKERS, Store, latency_summary, read_started, wait_until

APP = WORKERS / "dbos_app.py"


def _run_app(tmp: Path, name: str, *args: str, timeout: float = 600) -> dict[str, Any]:
    log = tmp / f"{name}.log"
    proc = subprocess.run(
        [sys.executable, str(APP), *args],
        cwd=tmp,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    log.write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise RuntimeError(f"DBOS {name} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")][-1]
    result: dict[str, Any] = json.loads(line)
    return result


def latency(tmp: Path, store: Store, runs: int) -> dict[str, Any]:
    """``runs`` executions of a 10-step workflow, one after the other, in one DBOS process."""
    with store.fresh(tmp, "dbos-latency") as url:
        out = _run_app(tmp, "dbos-latency", "latency", url, str(runs))
    return latency_summary(out["runs"])


def throughput(tmp: Path, store: Store, n: int) -> dict[str, Any]:
    """``n`` ``DBOS.start_workflow_async`` calls (gathered), then every handle awaited."""
    with store.fresh(tmp, "dbos-throughput") as url:
        out = _run_app(tmp, "dbos-throughput", "throughput", url, str(n))
    out["per_second"] = n / out["seconds"]
    return out


def _spawn(tmp: Path, name: str, *args: str) -> subprocess.Popen[bytes]:
    log = open(tmp / f"{name}.log", "ab")  # noqa: SIM115 - the child keeps it
    try:
        return subprocess.Popen(
            [sys.executable, str(APP), *args],
            cwd=tmp,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    finally:
        log.close()


def _crash_round(
    tmp: Path, i: int, db: str, folder: Path, timeout: float
) -> tuple[float, float] | None:
    """One kill and restart; (kill -> re-run, spawn -> re-run) in seconds, None if no re-run."""
    started = folder / "started"
    first = _spawn(tmp, f"dbos-crash-{i}-a", "crash", db, str(folder), "start")
    try:
        if not wait_until(lambda: len(read_started(started)) >= 1, timeout):
            raise RuntimeError("the DBOS crash workflow never reached step 2")
        t_kill = time.time()
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
        t_spawn = time.time()
        second = _spawn(tmp, f"dbos-crash-{i}-b", "crash", db, str(folder), "recover")
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(10)
    try:
        resumed = wait_until(
            lambda: any(pid != first.pid for pid, _ in read_started(started)), timeout
        )
        measured = None
        if resumed:
            t_resume = next(t for pid, t in read_started(started) if pid != first.pid)
            measured = (t_resume - t_kill, t_resume - t_spawn)
        (folder / "release").touch()
        (folder / "done").touch()
        second.wait(timeout)
        return measured
    finally:
        if second.poll() is None:
            second.kill()
            second.wait(10)


def crash(tmp: Path, store: Store, rounds: int, timeout: float = 60.0) -> dict[str, Any]:
    """kill -9 the DBOS process blocked in step 2, start a new one at once, time the re-run.

    Measured: ``time.time()`` just before SIGKILL -> ``time.time()`` written by the new
    process when the re-run of step 2 begins. This includes starting Python, importing
    DBOS and ``DBOS.launch()`` (whose recovery re-runs the pending workflow): DBOS recovers
    a dead process's workflows only when a process with its executor id launches again.
    """
    delays: list[float] = []
    from_spawn: list[float] = []
    failures = 0
    for i in range(rounds):
        folder = tmp / f"dbos-crash-{i}"
        folder.mkdir()
        with store.fresh(tmp, f"dbos-crash-{i}") as url:
            measured = _crash_round(tmp, i, url, folder, timeout)
        if measured is None:
            failures += 1
        else:
            delays.append(measured[0])
            from_spawn.append(measured[1])
    return {
        "rounds": rounds,
        "failures": failures,
        "delays_s": delays,
        "median_s": statistics.median(delays) if delays else float("nan"),
        "max_s": max(delays) if delays else float("nan"),
        "median_from_spawn_s": statistics.median(from_spawn) if from_spawn else float("nan"),
    }
