"""Small helpers shared by the benchmark drivers."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORKERS = HERE / "workers"


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100), linear interpolation between closest ranks."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    if len(ordered) == 1:
        return ordered[0]
    pos = (len(ordered) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def latency_summary(runs: Sequence[Sequence[float]]) -> dict[str, float | int]:
    """Per-step latency of ``runs`` (each a list of per-step durations in seconds).

    ``median_ms``: median over runs of each run's median step time;
    ``p90_ms``: 90th percentile over all individual step timings.
    """
    per_run = [statistics.median(r) for r in runs]
    flat = [x for r in runs for x in r]
    return {
        "runs": len(runs),
        "steps": len(flat),
        "median_ms": statistics.median(per_run) * 1000,
        "p90_ms": percentile(flat, 90) * 1000,
        "mean_ms": statistics.fmean(flat) * 1000,
    }


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.001) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def read_started(path: Path) -> list[tuple[int, float]]:
    """``(pid, time.time())`` lines written by the blocking step of the crash workflow."""
    if not path.exists():
        return []
    lines: list[tuple[int, float]] = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2:
            lines.append((int(parts[0]), float(parts[1])))
    return lines
