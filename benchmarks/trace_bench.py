"""Tracing overhead: per-step latency (and batch throughput) with OTLP export off and on.

Usage::

    python benchmarks/trace_bench.py                 # SQLite and PostgreSQL, 5 rounds each
    python benchmarks/trace_bench.py --store sqlite --rounds 3 --runs 20

The scenarios are those of ``run.py`` (``polos_bench``): a 10-step no-op workflow run
one after the other (per-step latency timed inside the workflow), and 500 3-step
workflows started with ``invoke_many`` and awaited with ``wait_many``. Each round runs
both with a fresh orchestrator and database, export off then on (the order alternates
between rounds, so drift on the machine hits both sides alike). "On" means the
orchestrator is started with ``OTEL_EXPORTER_OTLP_ENDPOINT`` pointing at a dummy
collector in this process, which answers 200 and counts the spans it is sent (so the
export is known to have happened). Prints medians over rounds and the on/off ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_common import DEFAULT_PG_URL, STORES, WORKERS, Store, latency_summary

from polos import PolosClient
from polos.testing import ServerProcess, WorkerProcess, wait_for_workers

WORKER_SCRIPT = WORKERS / "polos_worker.py"


class DummyCollector:
    """Accepts OTLP/HTTP trace exports and counts the spans (without a protobuf decode
    on the hot side: the count comes from a decode done after the run)."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # http.server calls it by this name
                owner.bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def span_count(self) -> int:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
        )

        total = 0
        for body in self.bodies:
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            total += sum(len(s.spans) for rs in request.resource_spans for s in rs.scope_spans)
        return total


async def _latency(url: str, runs: int) -> list[list[float]]:
    async with PolosClient(url) as client:
        await (await client.invoke("bench_latency")).result(timeout=60)  # warm-up
        samples = []
        for _ in range(runs):
            samples.append(list(await (await client.invoke("bench_latency")).result(timeout=60)))
        return samples


async def _throughput(url: str, n: int) -> float:
    async with PolosClient(url) as client:
        warm = await client.invoke_many("bench_throughput", [None] * 10)
        await client.wait_many([h.id for h in warm], timeout=60)
        t0 = time.perf_counter()
        handles = await client.invoke_many("bench_throughput", [None] * n)
        done = await client.wait_many([h.id for h in handles], timeout=300)
        seconds = time.perf_counter() - t0
        assert all(e.result == 3 for e in done)
        return n / seconds


def one_round(
    tmp: Path, store: Store, name: str, env: dict[str, str], runs: int, n: int
) -> dict[str, Any]:
    """A fresh orchestrator (with ``env``) and worker: the latency runs, then throughput."""
    with (
        store.fresh(tmp, f"polos-{name}") as url,
        ServerProcess(url, env=env, log_path=tmp / f"{name}-server.log") as server,
        WorkerProcess(
            WORKER_SCRIPT, api_url=server.url, args=["1000"], log_path=tmp / f"{name}.log"
        ),
    ):
        wait_for_workers(server.url, 1)
        summary = latency_summary(asyncio.run(_latency(server.url, runs)))
        summary["per_second"] = asyncio.run(_throughput(server.url, n))
    return summary


def bench_store(store: Store, rounds: int, runs: int, n: int) -> dict[str, Any]:
    """``rounds`` off/on pairs on one store; medians over rounds and ratios."""
    results: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
    spans: list[int] = []
    with tempfile.TemporaryDirectory(prefix="polos-trace-bench-") as folder:
        tmp = Path(folder)
        for i in range(rounds):
            order = ["off", "on"] if i % 2 == 0 else ["on", "off"]
            for mode in order:
                collector = DummyCollector() if mode == "on" else None
                env = {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url} if collector else {}
                results[mode].append(one_round(tmp, store, f"{mode}{i}", env, runs, n))
                if collector is not None:
                    collector.httpd.shutdown()
                    spans.append(collector.span_count())
    out: dict[str, Any] = {"rounds": rounds, "runs": runs, "workflows": n, "spans": spans}
    for mode, items in results.items():
        out[mode] = {
            "median_ms": statistics.median(r["median_ms"] for r in items),
            "p90_ms": statistics.median(r["p90_ms"] for r in items),
            "per_second": statistics.median(r["per_second"] for r in items),
            "raw": items,
        }
    # Paired: each round's on/off ratio, then their median (robust to a noisy round,
    # which slows both sides of that round alike).
    pairs = list(zip(results["off"], results["on"], strict=True))
    out["paired_latency_ratio"] = statistics.median(
        n["median_ms"] / f["median_ms"] for f, n in pairs
    )
    out["paired_throughput_ratio"] = statistics.median(
        n["per_second"] / f["per_second"] for f, n in pairs
    )
    out["latency_ratio"] = out["on"]["median_ms"] / out["off"]["median_ms"]
    out["p90_ratio"] = out["on"]["p90_ms"] / out["off"]["p90_ms"]
    out["throughput_ratio"] = out["on"]["per_second"] / out["off"]["per_second"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", choices=[*STORES, "both"], default="both")
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=20, help="latency runs per round")
    parser.add_argument("--workflows", type=int, default=500, help="throughput workflows")
    parser.add_argument("--output", type=Path, default=None, help="write the JSON here")
    args = parser.parse_args()
    kinds = list(STORES) if args.store == "both" else [args.store]
    report: dict[str, Any] = {}
    for kind in kinds:
        store = Store(kind, args.pg_url)
        store.check()
        report[kind] = bench_store(store, args.rounds, args.runs, args.workflows)
    print(
        f"\n{'store':<10} {'step median off/on (ms)':>24} {'ratio':>6} "
        f"{'p90 off/on (ms)':>17} {'ratio':>6} {'wf/s off/on':>14} {'ratio':>6}"
    )
    for kind, r in report.items():
        off, on = r["off"], r["on"]
        print(
            f"{kind:<10} {off['median_ms']:>11.3f} / {on['median_ms']:<10.3f} "
            f"{r['latency_ratio']:>6.3f} {off['p90_ms']:>7.3f} / {on['p90_ms']:<7.3f} "
            f"{r['p90_ratio']:>6.3f} {off['per_second']:>6.0f} / {on['per_second']:<5.0f} "
            f"{r['throughput_ratio']:>6.3f}"
        )
        print(
            f"{'':<10} paired (median of per-round on/off ratios): step latency "
            f"{r['paired_latency_ratio']:.3f}, throughput {r['paired_throughput_ratio']:.3f}"
        )
        print(f"{'':<10} spans received by the collector per 'on' round: {r['spans']}")
    if args.output is not None:
        args.output.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
