"""Several orchestrators on one PostgreSQL: dispatch, waits, cancel and failover across replicas."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from polos import ExecutionStatus, PolosClient
from polos.storage import migrations, open_store
from polos.testing import ServerProcess, WorkerProcess, wait_for_workers
from tests.integration.conftest import STEPS_WORKER, count_lines, wait_until

FLOW_WORKER = Path(__file__).parent / "workers" / "flow_worker.py"

pytestmark = pytest.mark.postgres


@pytest.fixture
def shared_db(pg_url_empty: str) -> str:
    """A fresh, empty PostgreSQL database for this test (the orchestrators migrate it)."""
    return pg_url_empty


@pytest.fixture
def replicas(shared_db: str, tmp_path: Path) -> Iterator[list[ServerProcess]]:
    servers = [
        ServerProcess(shared_db, log_path=tmp_path / f"orchestrator-{n}.log").start()
        for n in ("a", "b")
    ]
    try:
        yield servers
    finally:
        for server in servers:
            server.kill()


def _worker(api_url: str, side_log: Path, tmp_path: Path, name: str) -> WorkerProcess:
    return WorkerProcess(
        STEPS_WORKER,
        api_url=api_url,
        env={"SIDE_LOG": str(side_log)},
        log_path=tmp_path / f"worker-{name}.log",
    ).start()


async def test_migrations__concurrent_orchestrators_migrate_once(shared_db: str) -> None:
    stores = await asyncio.gather(*(open_store(shared_db) for _ in range(4)))
    try:
        with psycopg.connect(shared_db) as conn:
            versions = conn.execute(
                "SELECT version FROM schema_migrations ORDER BY version"
            ).fetchall()
        assert versions == [(m.version,) for m in migrations("postgres")]
    finally:
        for store in stores:
            await store.close()


@pytest.mark.timeout(90)
async def test_replicas__invoke_wait_and_cancel_through_one_replica_while_the_worker_is_on_another(
    replicas: list[ServerProcess], tmp_path: Path
) -> None:
    a, b = replicas
    side_log = tmp_path / "side.log"
    worker = _worker(b.url, side_log, tmp_path, "b")
    try:
        wait_for_workers(b.url, 1)
        async with PolosClient(a.url) as client:
            quick = await client.invoke("five_steps", {"sleep": 0.0, "tag": "via-a"})
            result = await quick.result(timeout=30)
            assert result["tag"] == "via-a"

            slow = await client.invoke(
                "five_steps", {"sleep": 5.0, "tag": "slow", "log": str(side_log)}
            )
            wait_until(lambda: count_lines(side_log, "s1 start") >= 2, what="slow step 1 to start")
            cancelled = await client.cancel(slow.id)
            assert cancelled.status == ExecutionStatus.CANCELLED
            # The cancel reached the worker through the other replica: its coroutine stopped.
            wait_until(
                lambda: "cancelled" in worker.output(), what="the worker to hear about the cancel"
            )
            assert count_lines(side_log, "s2 start") == 1  # only the quick run's step 2
    finally:
        worker.stop()


@pytest.mark.timeout(90)
async def test_replicas__workers_and_clients_fail_over_when_an_orchestrator_dies(
    replicas: list[ServerProcess], tmp_path: Path
) -> None:
    a, b = replicas
    side_log = tmp_path / "side.log"
    urls = f"{a.url},{b.url}"
    worker = _worker(urls, side_log, tmp_path, "ab")
    try:
        wait_for_workers(a.url, 1)
        async with PolosClient([a.url, b.url]) as client:
            handle = await client.invoke("five_steps", {"sleep": 0.4, "tag": "failover"})
            wait_until(lambda: count_lines(side_log, "s2 start") == 1, what="step 2 to start")
            a.kill()
            result = await handle.result(timeout=45)
            assert result["tag"] == "failover"
            assert worker.alive
            assert worker.output().count("connected to ") >= 2
            for i in (1, 4, 5):
                assert count_lines(side_log, f"s{i} start") == 1
            execution = await client.get_execution(handle.id)
            assert execution.status == ExecutionStatus.COMPLETED
    finally:
        worker.stop()


@pytest.mark.timeout(120)
async def test_replicas__a_queue_limit_holds_across_orchestrators_and_their_workers(
    replicas: list[ServerProcess], tmp_path: Path
) -> None:
    flow_dir = tmp_path / "flow"
    flow_dir.mkdir()
    workers = [
        WorkerProcess(
            FLOW_WORKER,
            api_url=server.url,
            env={"FLOW_DIR": str(flow_dir), "HOLD_SECONDS": "0.03"},
            log_path=tmp_path / f"flow-worker-{n}.log",
        ).start()
        for n, server in enumerate([*replicas, *replicas])  # two workers on each replica
    ]
    try:
        wait_for_workers(replicas[0].url, 4)
        async with PolosClient(replicas[0].url) as client:
            handles = await client.invoke_many("limited", [{} for _ in range(200)])
            done = await client.wait_many([h.id for h in handles], timeout=90)
        assert {e.status for e in done} == {ExecutionStatus.COMPLETED}
        peaks = json.loads((flow_dir / "counters.json").read_text())["max"]
        assert peaks["limited"] == 5  # both replicas dispatched, never more than 5 at once
        starts = [ln.split() for ln in (flow_dir / "log.txt").read_text().splitlines() if ln]
        assert len(starts) == 200  # each ran once
        pids = {int(line[3]) for line in starts}
        on_a = {workers[0].pid, workers[2].pid}
        assert pids & on_a and pids - on_a, "both replicas' workers should have run some"
    finally:
        for worker in workers:
            worker.stop(timeout=5)
