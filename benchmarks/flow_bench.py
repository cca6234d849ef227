"""What flow control costs: the claim path with and without limits, dispatch, throughput.

Usage::

    python benchmarks/flow_bench.py --quick     # ~1 min for both stores
    python benchmarks/flow_bench.py             # ~2-3 min
    python benchmarks/flow_bench.py --store sqlite|postgres|both

Three measurements per store, each on fresh databases, for four workflows that differ only
in their queue (``workers/flow_worker.py``): ``plain`` (no queue), ``limited`` (a
concurrency limit), ``keyed`` (a limit per concurrency key, 100 keys), ``rated`` (a rate
limit on starts). No limit is ever reached: the numbers are the price of *checking*.

1. **Claim at the store**: ``Store.apply_batch([ClaimOp(limit=k)])`` timed in process
   against a backlog of queued executions, k = 1 and k = 50 (a worker asking for one task,
   or for fifty at once).
2. **Dispatch latency**: a real orchestrator and worker; one execution at a time,
   ``invoke`` -> the first step running on the worker (client stamp to step stamp).
3. **Throughput**: 1,000 executions with ``invoke_many`` + ``wait_many`` (one worker,
   ``max_concurrent=1000``), completed per second.

Target (issue 5): limits add under 10 % to claim latency and do not lower throughput when
capacity is free.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent / "workers"))

import flow_worker
from bench_common import DEFAULT_PG_URL, STORES, WORKERS, Store, percentile

from polos import PolosClient
from polos.protocol import DEFAULT_PROJECT_ID
from polos.storage import ClaimOp, CreateExecution, open_store
from polos.testing import ServerProcess, WorkerProcess, wait_for_workers

WORKFLOWS = ("plain", "limited", "keyed", "rated")
MODES = {
    "quick": {"claims": 200, "dispatch_runs": 20, "throughput": 500},
    "full": {"claims": 600, "dispatch_runs": 60, "throughput": 1000},
}
RESULTS = Path(__file__).resolve().parent / "results"


def _ms(values: list[float]) -> dict[str, float]:
    return {
        "median_ms": round(statistics.median(values) * 1000, 3),
        "p90_ms": round(percentile(values, 90) * 1000, 3),
        "n": len(values),
    }


# ---------------------------------------------------------------------- 1. claim at the store


async def _claims(url: str, claims: int) -> dict[str, Any]:
    store = await open_store(url)
    try:
        await store.ensure_project(DEFAULT_PROJECT_ID, "Default project")
        specs = [
            w.spec()
            for w in (flow_worker.plain, flow_worker.limited, flow_worker.keyed, flow_worker.rated)
        ]
        await store.register_worker(
            project_id=DEFAULT_PROJECT_ID,
            worker_id="bench-worker",
            name="bench",
            hostname="bench",
            pid=1,
            orchestrator_id="bench",
            max_concurrent=100_000,
            workflows=specs,
            active={},
            lease_ms=3_600_000,
        )
        out: dict[str, Any] = {}
        # Interleave the workflows so that slow drift of the machine hits all of them.
        backlog = claims * 51 + 100
        for wf in WORKFLOWS:
            for start in range(0, backlog, 1000):
                ops = [
                    CreateExecution(
                        project_id=DEFAULT_PROJECT_ID,
                        workflow_id=wf,
                        payload_json="null",
                        concurrency_key=f"k{i % 100}" if wf == "keyed" else None,
                    )
                    for i in range(start, min(backlog, start + 1000))
                ]
                await store.apply_batch(ops)
        # Only one workflow's executions may be claimable at a time: give the worker one
        # workflow per measurement by (re)registering it with just that workflow.
        for k in (1, 50):
            samples: dict[str, list[float]] = {wf: [] for wf in WORKFLOWS}
            for wf, spec in zip(WORKFLOWS, specs, strict=True):
                await store.register_worker(
                    project_id=DEFAULT_PROJECT_ID,
                    worker_id=f"bench-{wf}",
                    name=wf,
                    hostname="bench",
                    pid=1,
                    orchestrator_id="bench",
                    max_concurrent=100_000,
                    workflows=[spec],
                    active={},
                    lease_ms=3_600_000,
                )
            rounds = claims if k == 1 else max(20, claims // 10)
            for _ in range(rounds):
                for wf in WORKFLOWS:
                    t0 = time.perf_counter()
                    outcome = await store.apply_batch(
                        [ClaimOp(DEFAULT_PROJECT_ID, f"bench-{wf}", k)]
                    )
                    samples[wf].append(time.perf_counter() - t0)
                    got = outcome.results[0]
                    assert isinstance(got, list) and len(got) == k, (wf, got)
            out[f"claim_{k}"] = {wf: _ms(v) for wf, v in samples.items()}
        return out
    finally:
        await store.close()


def claim_latency(tmp: Path, store: Store, claims: int) -> dict[str, Any]:
    with store.fresh(tmp, "polos-flow-claims") as url:
        return asyncio.run(_claims(url, claims))


# ---------------------------------------------------------------------- 2 and 3: end to end


async def _end_to_end(url: str, runs: int, n: int) -> dict[str, Any]:
    async with PolosClient(url) as client:
        dispatch: dict[str, list[float]] = {wf: [] for wf in WORKFLOWS}
        for wf in WORKFLOWS:  # warm-up
            for _ in range(3):
                await (
                    await client.invoke(wf, concurrency_key="k0" if wf == "keyed" else None)
                ).result(timeout=30)
        for _ in range(runs):
            for wf in WORKFLOWS:
                t0 = time.time()
                handle = await client.invoke(wf, concurrency_key="k0" if wf == "keyed" else None)
                stamp = await handle.result(timeout=30)
                dispatch[wf].append(stamp - t0)
        throughput: dict[str, float] = {}
        for wf in WORKFLOWS:
            items = [None] * n
            t0 = time.perf_counter()
            if wf == "keyed":  # one batch request, 100 keys
                body = {
                    "items": [
                        {"workflow_id": wf, "concurrency_key": f"k{i % 100}"} for i in range(n)
                    ]
                }
                answer = await client._request("POST", "/executions/batch", json=body)
                ids = [item["id"] for item in answer["items"]]
            else:
                ids = [h.id for h in await client.invoke_many(wf, items)]
            done = await client.wait_many(ids, timeout=120)
            elapsed = time.perf_counter() - t0
            assert all(e.status == "completed" for e in done)
            throughput[wf] = round(len(done) / elapsed, 1)
        return {
            "dispatch": {wf: _ms(v) for wf, v in dispatch.items()},
            "throughput_wf_s": throughput,
        }


def end_to_end(tmp: Path, store: Store, runs: int, n: int) -> dict[str, Any]:
    with (
        store.fresh(tmp, "polos-flow-e2e") as url,
        ServerProcess(url, log_path=tmp / "flow-server.log") as server,
        WorkerProcess(
            WORKERS / "flow_worker.py",
            api_url=server.url,
            args=["1000"],
            log_path=tmp / "flow-worker.log",
        ),
    ):
        wait_for_workers(server.url, 1)
        return asyncio.run(_end_to_end(server.url, runs, n))


# ---------------------------------------------------------------------- report


def _ratio(value: float, base: float) -> str:
    return f"{value / base:.2f}x" if base else "-"


def print_table(results: dict[str, Any]) -> None:
    for store, r in results.items():
        print(f"\n{store}")
        print(f"| {'Metric':44} | {'plain':>9} | {'limited':>17} | {'keyed':>17} | {'rated':>17} |")
        print(f"|{'-' * 46}|{'-' * 11}|{'-' * 19}|{'-' * 19}|{'-' * 19}|")
        rows = [
            ("claim 1 at the store, median (ms)", r["claims"]["claim_1"], "median_ms"),
            ("claim 50 at the store, median (ms)", r["claims"]["claim_50"], "median_ms"),
            ("invoke -> first step, median (ms)", r["e2e"]["dispatch"], "median_ms"),
        ]
        for title, data, field in rows:
            base = data["plain"][field]
            cells = [
                f"{data[wf][field]:.3f} ({_ratio(data[wf][field], base)})" for wf in WORKFLOWS[1:]
            ]
            print(f"| {title:44} | {base:9.3f} | " + " | ".join(f"{c:>17}" for c in cells) + " |")
        tp = r["e2e"]["throughput_wf_s"]
        cells = [f"{tp[wf]:.0f} ({_ratio(tp[wf], tp['plain'])})" for wf in WORKFLOWS[1:]]
        print(
            f"| {'throughput, invoke_many + wait_many (wf/s)':44} | {tp['plain']:9.0f} | "
            + " | ".join(f"{c:>17}" for c in cells)
            + " |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--store", choices=[*STORES, "both"], default="both")
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL)
    parser.add_argument("--output", type=Path, default=RESULTS / "flow-latest.json")
    args = parser.parse_args()
    mode = MODES["quick" if args.quick else "full"]
    stores = list(STORES) if args.store == "both" else [args.store]
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="polos-flow-bench-") as folder:
        tmp = Path(folder)
        for kind in stores:
            store = Store(kind, args.pg_url)
            version = store.check()
            print(f"[{kind} {version}] claims ...", flush=True)
            claims = claim_latency(tmp, store, mode["claims"])
            print(f"[{kind}] dispatch and throughput ...", flush=True)
            e2e = end_to_end(tmp, store, mode["dispatch_runs"], mode["throughput"])
            results[kind] = {"version": version, "claims": claims, "e2e": e2e}
    print_table(results)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"mode": mode, "results": results}, indent=2))
    print(f"\nresults written to {args.output}")


if __name__ == "__main__":
    main()
