"""Polos vs DBOS on SQLite and PostgreSQL, measured in one run on this machine.

Usage::

    python benchmarks/run.py            # full: 30 latency runs, 1,000 workflows, 5 crashes
    python benchmarks/run.py --quick    # quick: 10 latency runs, 200 workflows, 3 crashes
    python benchmarks/run.py --store sqlite|postgres|both   # default: both

Prints one table per store and writes ``benchmarks/results/latest.json``. Every scenario
uses fresh databases: new SQLite files in a new temporary directory (removed afterwards
unless --keep), or new PostgreSQL databases (``polos_bench_<uuid>`` / ``dbos_bench_<uuid>``,
created on the ``--pg-url`` server and dropped afterwards).
See benchmarks/README.md for what each number means.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import dbos_bench
import polos_bench
from bench_common import DEFAULT_PG_URL, STORES, Store

import polos

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"

# Targets from the issue.
LATENCY_RATIO_TARGET = 2.0  # Polos per-step latency at most half of DBOS's
THROUGHPUT_RATIO_TARGET = 3.0  # Polos throughput at least 3x DBOS's
RESUME_TARGET_S = 1.0  # Polos crash-to-resume under 1 s

STORE_TITLES = {"sqlite": "SQLite", "postgres": "PostgreSQL"}

MODES = {
    "quick": {"latency_runs": 10, "workflows": 200, "crash_rounds": 3},
    "full": {"latency_runs": 30, "workflows": 1000, "crash_rounds": 5},
}


def _git(*args: str) -> str:
    try:
        out = subprocess.run(
            ["git", *args], cwd=HERE.parent, capture_output=True, text=True, timeout=10, check=False
        )
        return out.stdout.strip()
    except OSError:
        return ""


def environment() -> dict[str, Any]:
    mem_gib = float("nan")
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "memory_gib": round(mem_gib, 1),
        "sqlite": sqlite3.sqlite_version,
        "polos": polos.__version__,
        "polos_path": str(Path(polos.__file__).parent),
        "dbos": metadata.version("dbos"),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "git_commit": _git("rev-parse", "--short", "HEAD"),
        "src_modified": bool(_git("status", "--porcelain", "--", "src")),
        # Identifies the exact uncommitted src/ measured (others may be editing it).
        "src_diff_sha1": (
            hashlib.sha1(diff.encode()).hexdigest()[:12]
            if (diff := _git("diff", "HEAD", "--", "src"))
            else None
        ),
    }


def _ratio(a: float, b: float) -> float:
    return a / b if b and not math.isnan(a) and not math.isnan(b) else float("nan")


def run(mode: str, polos_workers: int, store: Store, tmp: Path) -> dict[str, Any]:
    """The three scenarios for both engines on ``store``; raw numbers, ratios, targets."""
    cfg = MODES[mode]
    timings: dict[str, float] = {}
    loadavg_at_start = [round(x, 2) for x in os.getloadavg()]

    def step(name: str, fn: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        print(f"  [{store}] {name} ...", end="", flush=True)
        t0 = time.perf_counter()
        folder = tmp / str(store) / name
        folder.mkdir(parents=True)
        out: dict[str, Any] = fn(folder, store, *args, **kwargs)
        timings[name] = time.perf_counter() - t0
        print(f" {timings[name]:.1f} s", flush=True)
        return out

    results: dict[str, Any] = {
        "latency": {
            "polos": step("polos-latency", polos_bench.latency, cfg["latency_runs"]),
            "dbos": step("dbos-latency", dbos_bench.latency, cfg["latency_runs"]),
        },
        "throughput": {
            "polos": step(
                "polos-throughput", polos_bench.throughput, cfg["workflows"], polos_workers
            ),
            "polos_batch": step(
                "polos-throughput-batch",
                polos_bench.throughput,
                cfg["workflows"],
                polos_workers,
                batch=True,
            ),
            "dbos": step("dbos-throughput", dbos_bench.throughput, cfg["workflows"]),
        },
        "crash": {
            "polos": step("polos-crash", polos_bench.crash, cfg["crash_rounds"]),
            "dbos": step("dbos-crash", dbos_bench.crash, cfg["crash_rounds"]),
        },
    }
    lat, thr, crash = results["latency"], results["throughput"], results["crash"]
    latency_ratio = _ratio(lat["dbos"]["median_ms"], lat["polos"]["median_ms"])
    throughput_ratio = _ratio(thr["polos"]["per_second"], thr["dbos"]["per_second"])
    resume = crash["polos"]["median_s"]
    results["ratios"] = {
        "latency_dbos_over_polos": latency_ratio,
        "latency_p90_dbos_over_polos": _ratio(lat["dbos"]["p90_ms"], lat["polos"]["p90_ms"]),
        "throughput_polos_over_dbos": throughput_ratio,
        "throughput_batch_polos_over_dbos": _ratio(
            thr["polos_batch"]["per_second"], thr["dbos"]["per_second"]
        ),
        "resume_dbos_over_polos": _ratio(crash["dbos"]["median_s"], resume),
    }
    results["targets"] = {
        "latency_at_most_half_of_dbos": {
            "target": f"DBOS/Polos >= {LATENCY_RATIO_TARGET}",
            "met": latency_ratio >= LATENCY_RATIO_TARGET,
        },
        "throughput_at_least_3x_dbos": {
            "target": f"Polos/DBOS >= {THROUGHPUT_RATIO_TARGET}",
            "met": throughput_ratio >= THROUGHPUT_RATIO_TARGET,
        },
        "throughput_batch_at_least_3x_dbos": {
            "target": f"Polos (batch API)/DBOS >= {THROUGHPUT_RATIO_TARGET}",
            "met": _ratio(thr["polos_batch"]["per_second"], thr["dbos"]["per_second"])
            >= THROUGHPUT_RATIO_TARGET,
        },
        "crash_to_resume_under_1s": {
            "target": f"Polos median < {RESUME_TARGET_S} s",
            "met": crash["polos"]["failures"] == 0 and resume < RESUME_TARGET_S,
        },
    }
    results["store"] = str(store)
    results["config"] = {"mode": mode, **cfg, "polos_workers": polos_workers}
    results["wall_seconds"] = timings
    results["loadavg_at_start"] = loadavg_at_start
    results["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return results


def _fmt_s(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} s"


def table(r: dict[str, Any], env: dict[str, Any]) -> str:
    lat, thr, crash = r["latency"], r["throughput"], r["crash"]
    ratios, targets = r["ratios"], r["targets"]

    def met(key: str) -> str:
        return "met" if targets[key]["met"] else "NOT met"

    rows = [
        (
            "Per-step latency, median (ms)",
            f"{lat['polos']['median_ms']:.2f}",
            f"{lat['dbos']['median_ms']:.2f}",
            f"{ratios['latency_dbos_over_polos']:.2f}x (DBOS/Polos)",
            f">= {LATENCY_RATIO_TARGET:g}x: {met('latency_at_most_half_of_dbos')}",
        ),
        (
            "Per-step latency, p90 (ms)",
            f"{lat['polos']['p90_ms']:.2f}",
            f"{lat['dbos']['p90_ms']:.2f}",
            f"{ratios['latency_p90_dbos_over_polos']:.2f}x (DBOS/Polos)",
            "-",
        ),
        (
            f"Throughput, {thr['polos']['n']} x 3-step wf (wf/s)",
            f"{thr['polos']['per_second']:.0f}",
            f"{thr['dbos']['per_second']:.0f}",
            f"{ratios['throughput_polos_over_dbos']:.2f}x (Polos/DBOS)",
            f">= {THROUGHPUT_RATIO_TARGET:g}x: {met('throughput_at_least_3x_dbos')}",
        ),
        (
            f"Throughput, batch API, {thr['polos_batch']['n']} x 3-step wf (wf/s)",
            f"{thr['polos_batch']['per_second']:.0f}",
            f"{thr['dbos']['per_second']:.0f}",
            f"{ratios['throughput_batch_polos_over_dbos']:.2f}x (Polos/DBOS)",
            f">= {THROUGHPUT_RATIO_TARGET:g}x: {met('throughput_batch_at_least_3x_dbos')}",
        ),
        (
            "Crash-to-resume, median (s) [*]",
            f"{crash['polos']['median_s']:.3f}",
            f"{crash['dbos']['median_s']:.3f}",
            f"{ratios['resume_dbos_over_polos']:.0f}x (DBOS/Polos)",
            f"Polos < {RESUME_TARGET_S:g} s: {met('crash_to_resume_under_1s')}",
        ),
    ]
    header = ("Metric", "Polos", "DBOS", "Ratio", "Target")
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]

    def fmt(row: tuple[str, ...]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) + " |"

    title = STORE_TITLES[r["store"]]
    version = env["stores"][r["store"]]["version"]
    lines = [f"{title} {version}", ""]
    lines += [fmt(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += [fmt(row) for row in rows]
    cfg = r["config"]
    lines.append("")
    lines.append(
        f"Latency: {cfg['latency_runs']} runs x 10 steps each (after 1 warm-up run); median of "
        "per-run medians, p90 over all steps."
    )
    lines.append(
        f"Throughput: {cfg['workflows']} workflows started at once, first start -> last result; "
        f"Polos: {cfg['polos_workers']} worker process(es), max_concurrent=1000, invokes and "
        f"result waits 100 at a time (server-side first create -> last completion: "
        f"{_fmt_s(thr['polos'].get('server_span_seconds'))}); batch API: invoke_many "
        "(1,000 per request) then wait_many (one long poll) (server-side: "
        f"{_fmt_s(thr['polos_batch'].get('server_span_seconds'))}); "
        "DBOS: start_workflow_async (gathered), then every handle awaited."
    )
    lines.append(
        f"Load average at start/end of this store's runs: {r['loadavg_at_start'][0]} / "
        f"{r['loadavg_at_end'][0]} ({env['cpus']} CPUs)."
    )
    lines.append(
        f"[*] {cfg['crash_rounds']} rounds (failures: Polos {crash['polos']['failures']}, "
        f"DBOS {crash['dbos']['failures']}). Polos: kill -9 of the worker in step 2 -> step 2 "
        "re-runs on the other, idle, connected worker. DBOS: kill -9 of the process in step 2, "
        "a new process started at once -> step 2 re-runs in it (includes Python + DBOS "
        f"start-up and launch recovery; {crash['dbos']['median_from_spawn_s']:.3f} s of it "
        "after the spawn)."
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs (~1 min per store)")
    parser.add_argument(
        "--store",
        choices=[*STORES, "both"],
        default="both",
        help="which database to run every scenario on (both)",
    )
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("POLOS_BENCH_PG_URL", DEFAULT_PG_URL),
        help="an existing PostgreSQL database to connect to for CREATE/DROP DATABASE "
        f"(default: $POLOS_BENCH_PG_URL or {DEFAULT_PG_URL})",
    )
    parser.add_argument(
        "--polos-workers", type=int, default=1, help="worker processes for throughput (1)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, dbs)")
    parser.add_argument("--output", type=Path, default=RESULTS / "latest.json")
    args = parser.parse_args()
    mode = "quick" if args.quick else "full"
    stores = [
        Store(kind, args.pg_url) for kind in (STORES if args.store == "both" else [args.store])
    ]

    env = environment()
    env["stores"] = {}
    for store in stores:
        env["stores"][str(store)] = {"version": store.check(), "settings": store.settings()}
    on = ", ".join(f"{STORE_TITLES[k]} {v['version']}" for k, v in env["stores"].items())
    print(
        f"Polos {env['polos']} vs DBOS {env['dbos']} on {on}; "
        f"{env['cpus']} CPUs, {env['memory_gib']} GiB; Python {env['python']}; mode {mode}"
    )
    load = env["loadavg_at_start"][0]
    if load > 0.5 * (env["cpus"] or 1):
        print(
            f"WARNING: load average {load} before starting: other processes compete for the "
            "CPUs, so absolute numbers (and possibly ratios) are pessimistic."
        )
    tmp = Path(tempfile.mkdtemp(prefix="polos-bench-"))
    started = time.perf_counter()
    per_store: dict[str, dict[str, Any]] = {}
    try:
        for store in stores:
            per_store[str(store)] = run(mode, args.polos_workers, store, tmp)
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    env["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    results: dict[str, Any] = {
        "config": {"mode": mode, **MODES[mode], "polos_workers": args.polos_workers},
        "stores": per_store,
        "environment": env,
        "total_seconds": time.perf_counter() - started,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }

    for r in per_store.values():
        print()
        print(table(r, env))
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
