"""Server time of the UI's pages with 100,000 executions stored (SQLite and PostgreSQL).

The UI is a static page that reads the JSON API, so a page's server time is the time of
the API calls it makes: the executions list (first page, each filter, a later page) and an
execution of 200 steps (the execution, its steps, its children, its trace). The database is
filled through the storage API (no worker), then a real ``polos-server`` serves it and
each request is timed in this process over loopback (an upper bound on server time: it
includes HTTP and JSON on both sides). The target: under 300 ms.

    python benchmarks/ui_bench.py --quick            # 20,000 executions, 20 samples
    python benchmarks/ui_bench.py                    # 100,000 executions, 50 samples
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from bench_common import Store, percentile

from polos.protocol import DEFAULT_PROJECT_ID, StepKind, StepRecord, WorkflowSpec, now_ms
from polos.storage import ClaimOp, CreateExecution, RecordStepOp, open_store
from polos.testing._processes import ServerProcess

P = DEFAULT_PROJECT_ID
WORKFLOWS = [f"wf_{i}" for i in range(10)]
BIG_STEPS = 200


async def fill(url: str, executions: int) -> tuple[str, str]:
    """Store ``executions`` executions (a tenth of them children) and one of 200 steps.

    Returns the big execution's id and a prefix of some execution's id.
    """
    store = await open_store(url)
    try:
        await store.ensure_project(P, "Default project")
        await store.register_worker(
            project_id=P,
            worker_id="bench-worker",
            name="bench",
            hostname="bench",
            pid=1,
            orchestrator_id="bench",
            max_concurrent=10,
            workflows=[WorkflowSpec(id=w, fingerprint="fp") for w in WORKFLOWS],
            active={},
            lease_ms=3_600_000,
        )
        # The big execution first: the claim takes the oldest queued one.
        big = await store.apply_batch(
            [CreateExecution(project_id=P, workflow_id=WORKFLOWS[0], payload_json="{}")]
        )
        big_id = big.results[0].execution.id  # type: ignore[union-attr]
        [task] = (await store.apply_batch([ClaimOp(P, "bench-worker", 1)])).results[0]  # type: ignore[misc]
        assert task.execution_id == big_id
        now = now_ms()
        for i in range(BIG_STEPS):
            kind = (StepKind.LLM, StepKind.TOOL, StepKind.RUN)[i % 3]
            step = StepRecord(
                key=f"step-{i}",
                seq=i + 1,
                kind=kind,
                output={"i": i, "text": "result " * 20},
                started_at=now + i * 10,
                completed_at=now + i * 10 + 7,
            )
            await store.apply_batch([RecordStepOp(big_id, task.epoch, step)])
        batch = 1000
        parents: list[str] = [big_id]
        for start in range(0, executions, batch):
            ops = []
            for i in range(start, min(start + batch, executions)):
                parent = parents[i % len(parents)] if i % 10 == 0 else None
                ops.append(
                    CreateExecution(
                        project_id=P,
                        workflow_id=WORKFLOWS[i % len(WORKFLOWS)],
                        payload_json=json.dumps({"n": i, "text": "x" * 100}),
                        parent_id=parent,
                        root_id=parent,
                        parent_step_key=f"child:{i}" if parent else None,
                    )
                )
            outcome = await store.apply_batch(ops)
            created = [r.execution.id for r in outcome.results if hasattr(r, "execution")]
            parents.extend(created[1:4])
        return big_id, big_id[:6]
    finally:
        await store.close()


def analyze(url: str) -> None:
    """PostgreSQL: gather planner statistics, as autovacuum does within a minute of a bulk
    load (without them the planner guesses row counts and may sort 100,000 rows).
    SQLite: nothing (the orchestrator never runs ANALYZE; the indexes alone decide)."""
    if url.startswith("postgresql"):
        import psycopg

        with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
            conn.execute("ANALYZE")


def timed(client: httpx.Client, path: str, params: Any, samples: int) -> dict[str, float]:
    times = []
    for _ in range(samples):
        start = time.perf_counter()
        response = client.get(path, params=params)
        times.append((time.perf_counter() - start) * 1000)
        if response.status_code >= 400:
            raise SystemExit(f"{path} {params}: {response.status_code} {response.text[:200]}")
    return {
        "median_ms": round(statistics.median(times), 2),
        "p90_ms": round(percentile(times, 90), 2),
        "max_ms": round(max(times), 2),
    }


def measure(base: str, big_id: str, prefix: str, samples: int) -> dict[str, dict[str, float]]:
    api = "/api/v1"
    now = now_ms()
    with httpx.Client(base_url=base, timeout=30) as client:
        first = client.get(f"{api}/executions", params={"limit": 50}).json()
        cursor = first["next_cursor"]
        for _ in range(20):  # a page well into the list
            cursor = client.get(f"{api}/executions", params={"limit": 50, "cursor": cursor}).json()[
                "next_cursor"
            ]
        cases: dict[str, tuple[str, Any]] = {
            "list: first page": (f"{api}/executions", {"limit": 50}),
            "list: page 21": (f"{api}/executions", {"limit": 50, "cursor": cursor}),
            "list: status=failed (none)": (f"{api}/executions", {"limit": 50, "status": "failed"}),
            "list: status=queued": (f"{api}/executions", {"limit": 50, "status": "queued"}),
            "list: workflow": (f"{api}/executions", {"limit": 50, "workflow_id": "wf_3"}),
            "list: top level": (f"{api}/executions", {"limit": 50, "top_level": "true"}),
            "list: last hour": (
                f"{api}/executions",
                {"limit": 50, "created_after": now - 3_600_000, "created_before": now},
            ),
            "list: id prefix": (f"{api}/executions", {"limit": 50, "q": prefix}),
            "list: whole id": (f"{api}/executions", {"limit": 50, "q": big_id}),
            "execution": (f"{api}/executions/{big_id}", None),
            "execution: 200 steps": (f"{api}/executions/{big_id}/steps", None),
            "execution: children": (f"{api}/executions", {"parent_id": big_id, "limit": 200}),
            "execution: trace": (f"{api}/executions/{big_id}/trace", None),
            "UI page (static)": ("/", None),
        }
        results = {}
        for name, (path, params) in cases.items():
            if name == "execution: trace" and client.get(path).status_code == 404:
                continue  # a build without the trace API
            results[name] = timed(client, path, params, samples)
        return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20,000 executions, 20 samples")
    parser.add_argument("--store", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--executions", type=int, default=None)
    parser.add_argument("--output", default="benchmarks/results/ui.json")
    args = parser.parse_args()
    executions = args.executions or (20_000 if args.quick else 100_000)
    samples = 20 if args.quick else 50
    kinds = ["sqlite", "postgres"] if args.store == "both" else [args.store]
    report: dict[str, Any] = {
        "executions": executions,
        "samples": samples,
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "stores": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for kind in kinds:
            store = Store(kind, args.pg_url)
            version = store.check()
            with store.fresh(Path(tmp), "ui-bench") as url:
                started = time.perf_counter()
                big_id, prefix = asyncio.run(fill(url, executions))
                filled = time.perf_counter() - started
                analyze(url)
                with ServerProcess(url, log_path=Path(tmp) / f"{kind}-server.log") as server:
                    results = measure(server.url, big_id, prefix, samples)
            report["stores"][kind] = {"version": version, "fill_s": round(filled, 1), **results}
            print(f"\n{kind} {version}: {executions:,} executions (filled in {filled:.0f} s)")
            print(f"  {'request':32} {'median':>8} {'p90':>8} {'max':>8}  (ms)")
            for name, r in results.items():
                print(f"  {name:32} {r['median_ms']:8.2f} {r['p90_ms']:8.2f} {r['max_ms']:8.2f}")
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten to {args.output}")


if __name__ == "__main__":
    main()
