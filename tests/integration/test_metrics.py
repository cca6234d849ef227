"""``GET /metrics`` of a real orchestrator with real workers, on SQLite and PostgreSQL.

The values are checked against what the API says happened (executions' statuses,
their step logs), and against process deaths the test causes itself (kill -9, SIGSTOP).
"""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from polos import PolosClient
from polos.protocol import DEFAULT_PROJECT_ID
from polos.testing._processes import ServerProcess
from tests.integration.conftest import count_lines, wait_until

pytestmark = pytest.mark.timeout(90)

P = DEFAULT_PROJECT_ID
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(base_url: str) -> Samples:
    """Every sample of ``/metrics``, keyed by (sample name, labels)."""
    response = httpx.get(base_url + "/metrics", timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value; 0 when absent (a label set that never occurred)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


async def test_metrics__counts_match_what_ran(
    server: ServerProcess, client: PolosClient, start_worker
) -> None:
    start_worker()
    handles = [
        await client.invoke("five_steps", {"count": 3, "sleep": 0.01}),
        await client.invoke("five_steps", {"count": 2, "sleep": 0.01}),
        await client.invoke("always_fails", {}),  # two attempts, then failed
    ]
    finals = [await client.wait(h.id, timeout=30) for h in handles]
    statuses = [e.status.value for e in finals]
    assert statuses == ["completed", "completed", "failed"]
    steps = [s for h in handles for s in await client.list_steps(h.id)]
    assert len(steps) == 3 + 2 + 1  # always_fails' second attempt replays its one step

    samples = scrape(server.url)

    # executions by state: one grouped count, equal to what the API reports
    assert value(samples, "polos_executions", project=P, status="completed") == 2
    assert value(samples, "polos_executions", project=P, status="failed") == 1
    assert total(samples, "polos_executions") == 3
    assert value(samples, "polos_database_up") == 1
    # every applied step record is observed once, with its kind
    assert value(samples, "polos_step_duration_seconds_count", kind="run") == len(steps)
    assert value(samples, "polos_steps_recorded_total", kind="run", outcome="ok") == len(steps)
    durations = sum((s.completed_at or 0) - (s.started_at or 0) for s in steps) / 1000
    assert value(samples, "polos_step_duration_seconds_sum", kind="run") == pytest.approx(
        durations, abs=1e-6
    )
    # five_steps sleeps 10 ms per step: none of them is in the 5 ms bucket
    assert value(samples, "polos_step_duration_seconds_bucket", kind="run", le="0.005") <= 1
    # created and finished counters
    assert value(samples, "polos_executions_created_total", source="api") == 3
    assert value(samples, "polos_executions_finished_total", outcome="completed") == 2
    assert value(samples, "polos_executions_finished_total", outcome="failed") == 1
    assert value(samples, "polos_dispatches_total") == 4  # always_fails ran twice
    # the one connected worker and its (default 100) slots, all free again
    assert value(samples, "polos_workers_connected", project=P) == 1
    assert value(samples, "polos_worker_slots", project=P, state="free") == 100
    assert value(samples, "polos_worker_slots", project=P, state="busy") == 0
    # nothing is queued; batches were written
    assert total(samples, "polos_queue_depth") == 0
    assert value(samples, "polos_write_batch_size_count") >= 1
    assert value(samples, "polos_crashed_attempts_total", reason="disconnected") == 0

    openapi = httpx.get(server.url + "/api/v1/openapi.json", timeout=10).json()
    assert "/metrics" not in openapi["paths"]


async def test_metrics__kill9_counts_a_crash_and_shows_the_backlog(
    server: ServerProcess, client: PolosClient, start_worker, side_log: Path
) -> None:
    worker = start_worker(name="a")
    handle = await client.invoke("five_steps", {"count": 3, "sleep": 0.5})
    wait_until(lambda: count_lines(side_log, "s2 start") == 1, what="step 2 to start")
    before = scrape(server.url)
    assert value(before, "polos_worker_slots", project=P, state="busy") == 1
    assert value(before, "polos_executions", project=P, status="running") == 1

    worker.kill()
    after = wait_until(
        lambda: (
            s
            if value(s := scrape(server.url), "polos_crashed_attempts_total", reason="disconnected")
            else None
        ),
        what="the crash to be counted",
    )
    assert value(after, "polos_crashed_attempts_total", reason="disconnected") == 1
    assert value(after, "polos_worker_disconnects_total") == 1
    assert value(after, "polos_workers_connected", project=P) == 0
    assert value(after, "polos_executions", project=P, status="queued") == 1
    # no worker left: the requeued execution waits in the (unnamed) queue, runnable
    # once its short crash back-off has passed
    depth = total(after, "polos_queue_depth", project=P, queue="")
    assert depth == 1

    start_worker(name="b")
    assert (await client.wait(handle.id, timeout=30)).status.value == "completed"
    done = scrape(server.url)
    assert value(done, "polos_executions", project=P, status="completed") == 1
    assert total(done, "polos_queue_depth") == 0
    assert value(done, "polos_dispatches_total") == 2


async def test_metrics__lease_expiry_of_a_stopped_worker(make_server, start_worker) -> None:
    server: ServerProcess = make_server(lease_ms=1000, heartbeat_ms=200)
    worker = start_worker(api_url=server.url, name="zombie")
    async with PolosClient(server.url) as client:
        handle = await client.invoke("five_steps", {"count": 2, "sleep": 2.0})
        wait_until(
            lambda: value(scrape(server.url), "polos_worker_slots", project=P, state="busy"),
            what="the execution to be dispatched",
        )
        worker.signal(signal.SIGSTOP)  # socket open, heartbeats stop: only the lease notices
        samples = wait_until(
            lambda: s if value(s := scrape(server.url), "polos_lease_expiries_total") else None,
            what="the lease to lapse",
        )
        assert value(samples, "polos_lease_expiries_total") == 1
        assert value(samples, "polos_crashed_attempts_total", reason="lease_expired") == 1
        assert value(samples, "polos_crashed_attempts_total", reason="disconnected") == 0
        execution = await client.get_execution(handle.id)
        assert execution.crashed_attempts == 1
