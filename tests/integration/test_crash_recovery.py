"""Crash stories with real processes: kill -9, SIGSTOP zombies, orchestrator restarts, SIGTERM.

The side log (``workers/steps_worker.py`` appends ``<step> start|end <pid>``) is the
ground truth of which step functions really ran, and where.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from polos import ExecutionStatus, PolosClient
from polos.testing._processes import ServerProcess, free_port
from tests.integration.conftest import count_lines, pids_of, wait_until

pytestmark = [pytest.mark.timeout(60), pytest.mark.chaos]

EXPECTED = {"tag": "crash", "values": [10, 20, 30, 40, 50], "total": 150}
REFUSAL_MARKERS = ("moved to another worker", "stale", "refused")


def step_pid(step_output: object) -> int:
    assert isinstance(step_output, dict)
    return int(step_output["pid"])


async def test_worker_crash__kill9_during_step3_second_worker_finishes(
    client: PolosClient, start_worker, side_log: Path, tmp_path: Path
) -> None:
    worker_a = start_worker(name="a")
    reference_log = tmp_path / "reference.log"
    reference = await client.invoke(
        "five_steps", {"sleep": 0.01, "tag": "crash", "log": str(reference_log)}
    )
    crash_free = await reference.result(timeout=30)
    assert crash_free == EXPECTED

    handle = await client.invoke("five_steps", {"sleep": 0.5, "tag": "crash"})
    wait_until(lambda: count_lines(side_log, "s3 start") == 1, what="step 3 to start")
    worker_a.kill()
    worker_b = start_worker(name="b")
    result = await handle.result(timeout=30)

    assert result == crash_free
    assert [count_lines(side_log, f"s{i} start") for i in (1, 2, 4, 5)] == [1, 1, 1, 1]
    assert 1 <= count_lines(side_log, "s3 start") <= 2
    assert pids_of(side_log, "s1 end") == pids_of(side_log, "s2 end") == [worker_a.pid]
    assert pids_of(side_log, "s3 end") == [worker_b.pid]
    assert pids_of(side_log, "s4 end") == pids_of(side_log, "s5 end") == [worker_b.pid]
    execution = await client.get_execution(handle.id)
    assert execution.status == ExecutionStatus.COMPLETED
    assert execution.crashed_attempts == 1
    assert execution.failed_attempts == 0
    assert execution.attempt == 2
    assert [a.outcome for a in execution.attempts] == ["crashed"]
    assert execution.attempts[0].worker_id is not None
    assert str(worker_a.pid) in execution.attempts[0].worker_id
    steps = await client.list_steps(handle.id)
    assert [s.key for s in steps] == ["s1", "s2", "s3", "s4", "s5"]
    assert [step_pid(s.output) for s in steps] == [worker_a.pid] * 2 + [worker_b.pid] * 3


async def test_zombie_worker__sigstopped_worker_loses_lease_and_its_late_writes_are_refused(
    make_server, start_worker, side_log: Path
) -> None:
    server: ServerProcess = make_server(lease_ms=1500, heartbeat_ms=300)
    worker_a = start_worker(api_url=server.url, name="a")
    async with PolosClient(server.url) as client:
        handle = await client.invoke("five_steps", {"sleep": 0.6, "tag": "zombie"})
        wait_until(lambda: count_lines(side_log, "s2 start") == 1, what="step 2 to start")
        worker_a.signal(signal.SIGSTOP)

        async def requeued() -> bool:
            execution = await client.get_execution(handle.id)
            return execution.crashed_attempts == 1

        await async_wait_until(requeued, what="the lease of the stopped worker to run out")
        requeued_at = (await client.get_execution(handle.id)).attempts[0].ended_at
        worker_b = start_worker(api_url=server.url, name="b")
        result = await handle.result(timeout=30)
        assert result == {**EXPECTED, "tag": "zombie"}
        steps_before = await client.list_steps(handle.id)

        worker_a.signal(signal.SIGCONT)
        wait_until(
            lambda: any(marker in worker_a.output() for marker in REFUSAL_MARKERS),
            timeout=15,
            what="worker A to log that its lease moved on",
        )

        execution = await client.get_execution(handle.id)
        steps = await client.list_steps(handle.id)

    assert execution.status == ExecutionStatus.COMPLETED
    assert execution.result == result
    assert execution.crashed_attempts == 1
    assert [a.outcome for a in execution.attempts] == ["crashed"]
    assert str(worker_a.pid) in (execution.attempts[0].worker_id or "")
    assert steps == steps_before
    assert [s.key for s in steps] == ["s1", "s2", "s3", "s4", "s5"]
    assert step_pid(steps[0].output) == worker_a.pid
    assert [step_pid(s.output) for s in steps[1:]] == [worker_b.pid] * 4
    late = [s for s in steps if (s.completed_at or 0) >= requeued_at]
    assert late and all(step_pid(s.output) == worker_b.pid for s in late)
    assert sorted(pids_of(side_log, "s2 start")) == sorted([worker_a.pid, worker_b.pid])
    assert pids_of(side_log, "s3 start") == [worker_b.pid]
    assert worker_a.pid not in pids_of(side_log, "s4 start") + pids_of(side_log, "s5 start")


async def test_orchestrator_crash__kill9_and_restart_worker_reconnects_and_finishes(
    server: ServerProcess, client: PolosClient, start_worker, side_log: Path, tmp_path: Path
) -> None:
    worker = start_worker()
    before = await client.invoke("greet", {"name": "before the crash"})
    assert await before.result(timeout=30) == {"greeting": "hello before the crash"}

    handle = await client.invoke("five_steps", {"sleep": 0.5, "tag": "crash"})
    wait_until(lambda: count_lines(side_log, "s2 start") == 1, what="step 2 to start")
    server.kill()
    server.restart()
    result = await handle.result(timeout=45)

    assert result == EXPECTED
    assert worker.alive
    assert worker.output().count("connected to ") >= 2  # the same process reconnected
    assert count_lines(side_log, "s1 start") == 1
    in_flight = [count_lines(side_log, f"s{i} start") for i in (2, 3)]
    assert all(1 <= n <= 2 for n in in_flight) and sum(in_flight) <= 3
    assert count_lines(side_log, "s4 start") == count_lines(side_log, "s5 start") == 1
    assert set(pids_of(side_log, "s5 end")) == {worker.pid}
    steps = await client.list_steps(handle.id)
    assert [s.key for s in steps] == ["s1", "s2", "s3", "s4", "s5"]
    execution = await client.get_execution(handle.id)
    assert execution.status == ExecutionStatus.COMPLETED
    old = await client.get_execution(before.id)
    assert old.status == ExecutionStatus.COMPLETED
    assert old.result == {"greeting": "hello before the crash"}
    assert [s.key for s in await client.list_steps(before.id)] == ["hello"]


async def test_orchestrator_restart__graceful_stop_keeps_leases_and_repeats_nothing(
    server: ServerProcess, client: PolosClient, start_worker, side_log: Path
) -> None:
    worker = start_worker()
    handle = await client.invoke("five_steps", {"sleep": 0.5, "tag": "crash"})
    wait_until(lambda: count_lines(side_log, "s2 start") == 1, what="step 2 to start")
    # SIGTERM: a planned restart, not a crash (uvicorn re-raises the signal after shutting down)
    assert server.stop() in (0, -signal.SIGTERM)
    server.restart()
    result = await handle.result(timeout=45)

    assert result == EXPECTED
    assert worker.alive
    assert worker.output().count("connected to ") >= 2
    # The worker kept its lease across the restart: every step ran exactly once,
    # the step in flight reported its result after the restart, no attempt was lost.
    for i in range(1, 6):
        assert count_lines(side_log, f"s{i} start") == 1, i
    execution = await client.get_execution(handle.id)
    assert execution.status == ExecutionStatus.COMPLETED
    assert execution.attempt == 1
    assert execution.crashed_attempts == 0
    assert execution.attempts == []
    assert "requeued" not in server.output()


async def test_worker_shutdown__sigterm_releases_in_flight_execution(
    client: PolosClient, start_worker, side_log: Path
) -> None:
    worker_a = start_worker(env={"SHUTDOWN_GRACE": "1"}, name="a")
    handle = await client.invoke("five_steps", {"count": 8, "sleep": 0.5, "tag": "drain"})
    wait_until(lambda: count_lines(side_log, "s2 start") == 1, what="step 2 to start")

    worker_a.signal(signal.SIGTERM)
    assert worker_a.wait(timeout=15) == 0

    released = await client.get_execution(handle.id)
    assert released.status == ExecutionStatus.QUEUED
    assert [a.outcome for a in released.attempts] == ["released"]
    assert released.crashed_attempts == 0
    assert "shutting down" in worker_a.output()
    worker_b = start_worker(name="b")
    result = await handle.result(timeout=30)

    assert result == {"tag": "drain", "values": [i * 10 for i in range(1, 9)], "total": 360}
    execution = await client.get_execution(handle.id)
    assert execution.status == ExecutionStatus.COMPLETED
    assert execution.crashed_attempts == 0
    assert execution.failed_attempts == 0
    assert [a.outcome for a in execution.attempts] == ["released"]
    assert pids_of(side_log, "s8 end") == [worker_b.pid]
    assert count_lines(side_log, "s1 start") == 1
    assert all(count_lines(side_log, f"s{i} start") <= 2 for i in range(2, 9))


async def test_worker__started_before_orchestrator_connects_when_it_comes_up(
    make_server, start_worker
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    worker = start_worker(api_url=url, wait=False)
    wait_until(lambda: "unreachable" in worker.output(), what="the worker to retry connecting")
    assert worker.alive

    server: ServerProcess = make_server(port=port)
    start_worker.wait_connected(worker, server.url)
    async with PolosClient(server.url) as client:
        handle = await client.invoke("greet", {"name": "late server"})
        assert await handle.result(timeout=30) == {"greeting": "hello late server"}
    assert worker.alive


async def async_wait_until(condition, timeout: float = 20.0, what: str = "") -> None:
    """Await ``condition()`` until it is true; fail after ``timeout`` seconds."""
    import asyncio
    import time

    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.05)
