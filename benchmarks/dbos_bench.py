"""DBOS side: each scenario runs ``workers/dbos_app.py`` in a subprocess on a fresh SQLite file."""

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

from bench_common import WORKERS, latency_summary, read_started, wait_until

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


def latency(tmp: Path, runs: int) -> dict[str, Any]:
    """``runs`` executions of a 10-step workflow, one after the other, in one DBOS process."""
    out = _run_app(tmp, "dbos-latency", "latency", str(tmp / "dbos-latency.db"), str(runs))
    return latency_summary(out["runs"])


def throughput(tmp: Path, n: int) -> dict[str, Any]:
    """``n`` ``DBOS.start_workflow_async`` calls (gathered), then every handle awaited."""
    out = _run_app(tmp, "dbos-throughput", "throughput", str(tmp / "dbos-throughput.db"), str(n))
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


def crash(tmp: Path, rounds: int, timeout: float = 60.0) -> dict[str, Any]:
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
        db = str(tmp / f"dbos-crash-{i}.db")
        started = folder / "started"
        first = _spawn(tmp, f"dbos-crash-{i}-a", "crash", db, str(folder), "start")
        try:
            if not wait_until(lambda p=started: len(read_started(p)) >= 1, timeout):
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
                lambda p=started, v=first.pid: any(pid != v for pid, _ in read_started(p)),
                timeout,
            )
            if resumed:
                t_resume = next(t for pid, t in read_started(started) if pid != first.pid)
                delays.append(t_resume - t_kill)
                from_spawn.append(t_resume - t_spawn)
            else:
                failures += 1
            (folder / "release").touch()
            (folder / "done").touch()
            second.wait(timeout)
        finally:
            if second.poll() is None:
                second.kill()
                second.wait(10)
    return {
        "rounds": rounds,
        "failures": failures,
        "delays_s": delays,
        "median_s": statistics.median(delays) if delays else float("nan"),
        "max_s": max(delays) if delays else float("nan"),
        "median_from_spawn_s": statistics.median(from_spawn) if from_spawn else float("nan"),
    }
