"""Chaos: two orchestrators, three workers, one PostgreSQL; kill things while work runs.

Short form in CI (300 workflows); ``POLOS_CHAOS_WORKFLOWS=5000`` for the long form
(see docs/reliability.md). Checks: every execution completed exactly once with the right
result; the step log holds each step exactly once; side effects repeat only for steps
that were in flight at a kill (once step k+1 of an execution started, step k never runs
again).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from polos import ExecutionStatus, PolosClient
from polos.testing import ServerProcess, WorkerProcess, wait_for_workers
from tests.chaos.private_postgres import PrivatePostgres, private_postgres

HERE = Path(__file__).parent

pytestmark = [pytest.mark.chaos, pytest.mark.postgres]


@pytest.fixture
def cluster() -> Iterator[PrivatePostgres]:
    """A PostgreSQL cluster of this test's own: restarting it disturbs no other test."""
    try:
        with private_postgres() as pg:
            yield pg
    except (RuntimeError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        pytest.fail(f"cannot run a private PostgreSQL cluster: {exc} {detail.decode()[-500:]}")


@pytest.mark.timeout(900)
async def test_chaos__kills_and_a_database_restart_lose_nothing_and_repeat_no_step(
    cluster: PrivatePostgres, tmp_path: Path
) -> None:
    chaos_db = cluster.create_database("chaos")
    n = int(os.environ.get("POLOS_CHAOS_WORKFLOWS", "300"))
    delay = float(os.environ.get("POLOS_CHAOS_STEP_SECONDS", "0.15"))
    log = tmp_path / "effects.log"
    logs = tmp_path / "logs"
    servers = [
        ServerProcess(chaos_db, log_path=logs / f"orchestrator-{name}.log").start()
        for name in ("a", "b")
    ]
    urls = ",".join(s.url for s in servers)
    env = {"CHAOS_LOG": str(log)}
    workers = [
        WorkerProcess(HERE / "chaos_worker.py", api_url=urls, env=env, log_path=logs / f"w{i}.log")
        for i in range(3)
    ]
    events: list[str] = []
    rng = random.Random(int(os.environ.get("POLOS_CHAOS_SEED", "7")))
    restart_database = os.environ.get("POLOS_CHAOS_RESTART_DB", "1") == "1"
    try:
        for worker in workers:
            worker.start()
        wait_for_workers(servers[0].url, 3)
        async with PolosClient(urls.split(",")) as client:
            handles = await client.invoke_many("chaos", [delay] * n)
            ids = [h.id for h in handles]
            waiting = asyncio.create_task(client.wait_many(ids, timeout=600))

            async def chaos_monkey() -> None:
                started = time.monotonic()
                orchestrator_killed = database_restarted = False
                while not waiting.done():
                    await asyncio.sleep(rng.uniform(1.0, 2.0))
                    if waiting.done():
                        break
                    victim = rng.randrange(len(workers))
                    workers[victim].kill()
                    events.append(f"kill -9 worker {victim}")
                    workers[victim] = WorkerProcess(
                        HERE / "chaos_worker.py",
                        api_url=urls,
                        env=env,
                        log_path=logs / f"w{victim}-{len(events)}.log",
                    ).start()
                    elapsed = time.monotonic() - started
                    if not orchestrator_killed and elapsed > 3:
                        servers[0].kill()
                        events.append("kill -9 orchestrator a")
                        await asyncio.sleep(0.5)
                        await asyncio.to_thread(servers[0].restart)
                        events.append("orchestrator a restarted")
                        orchestrator_killed = True
                    elif (
                        restart_database
                        and orchestrator_killed
                        and not database_restarted
                        and elapsed > 6
                    ):
                        await asyncio.to_thread(cluster.restart)
                        events.append("postgresql restarted")
                        database_restarted = True
                assert orchestrator_killed and (database_restarted or not restart_database), (
                    f"the run ended before all chaos happened ({events}); raise POLOS_CHAOS_WORKFLOWS"
                )

            monkey = asyncio.create_task(chaos_monkey())
            executions = await waiting
            await monkey

        # 1. Every execution completed exactly once, with the right result.
        assert len(executions) == n
        wrong = [
            e.id
            for e in executions
            if e.status != ExecutionStatus.COMPLETED or e.result != [1, 2, 3, 4, 5]
        ]
        assert wrong == [], f"{len(wrong)} executions did not complete correctly: {wrong[:5]}"

        # 2. The step log holds each of the five steps exactly once per execution.
        with psycopg.connect(chaos_db) as conn:
            rows = conn.execute(
                "SELECT execution_id, string_agg(key, ',' ORDER BY seq) FROM steps GROUP BY execution_id"
            ).fetchall()
        logged = dict(rows)
        assert len(logged) == n
        assert {v for v in logged.values()} == {"s1,s2,s3,s4,s5"}

        # 3. Side effects: every step ran, and a step re-ran only while it was the latest one.
        per_execution: dict[str, list[str]] = defaultdict(list)
        for line in log.read_text().splitlines():
            execution_id, step, _pid = line.split()
            per_execution[execution_id].append(step)
        duplicates = 0
        for execution_id in ids:
            seen = per_execution[execution_id]
            distinct = [s for i, s in enumerate(seen) if i == 0 or s != seen[i - 1]]
            assert distinct == ["s1", "s2", "s3", "s4", "s5"], (execution_id, seen)
            duplicates += len(seen) - 5
        kills = sum(1 for e in events if e.startswith("kill -9 worker"))
        report = {
            "workflows": n,
            "worker_kills": kills,
            "events": events,
            "side_effect_duplicates": duplicates,
            "executions_with_crashes": sum(1 for e in executions if e.crashed_attempts),
        }
        (tmp_path / "chaos-report.json").write_text(json.dumps(report, indent=2))
        print(f"\nchaos report: {json.dumps(report)}")
        # Duplicates only come from steps in flight at a kill: bounded by what was running.
        assert duplicates <= (kills + 2) * 3 * 20
    finally:
        for worker in workers:
            worker.kill()
        for server in servers:
            server.kill()
