"""Run timeouts, step timeouts and cancellation end to end, on SQLite and PostgreSQL.

A real orchestrator, real worker processes (``workers/timeouts_worker.py``) and the
real ``PolosClient``. The side log is the ground truth of what the workflows did.
Most tests share one orchestrator per store and two workers (one serving the parent
workflows, one their children), and tell their executions apart by id; the crash
test has its own. On PostgreSQL the children's worker is connected to a second
orchestrator, so stopping a child goes through the other replica (NOTIFY).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import httpx
import pytest

from polos import (
    ExecutionStatus,
    NotWaitingError,
    PolosClient,
    WorkflowCancelledError,
    WorkflowTimeoutError,
)
from polos.protocol import Execution
from polos.sdk import child_execution_id
from polos.testing._processes import ServerProcess, WorkerProcess
from tests.integration.conftest import (
    Servers,
    Workers,
    count_lines,
    run_cli,
    side_lines,
    wait_until,
)

pytestmark = pytest.mark.timeout(60)

WORKER = Path(__file__).parent / "workers" / "timeouts_worker.py"
TIMEOUT_TYPE = "polos.WorkflowTimeoutError"
FAILED = ExecutionStatus.FAILED
CANCELLED = ExecutionStatus.CANCELLED
WAITING = ExecutionStatus.WAITING

T = TypeVar("T")


async def eventually(probe: Callable[[], Awaitable[T]], what: str, timeout: float = 15.0) -> T:
    """Await ``probe()`` until it returns something truthy; return it."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)


async def status_of(client: PolosClient, execution_id: str, *statuses: str) -> Execution:
    """Wait until the execution has one of ``statuses``; return it."""

    async def probe() -> Execution | None:
        execution = await client.get_execution(execution_id)
        return execution if execution.status in statuses else None

    return await eventually(probe, f"{execution_id} to be {'/'.join(statuses)}")


async def waits_of(client: PolosClient, *execution_ids: str) -> list[str]:
    page = await client.list_waits(limit=500)
    return [w.execution_id for w in page.items if w.execution_id in execution_ids]


def logged(side_log: Path, text: str) -> bool:
    return any(text in line for line in side_lines(side_log))


def count(side_log: Path, text: str) -> int:
    return sum(1 for line in side_lines(side_log) if text in line)


@dataclass
class Shared:
    server: ServerProcess
    side_log: Path
    parents: WorkerProcess
    children: WorkerProcess
    children_server: ServerProcess


@pytest.fixture(scope="module")
def shared(
    module_store_kind: str, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Shared]:
    """One orchestrator per store, a worker for the parent workflows and one for children."""
    tmp = tmp_path_factory.mktemp(f"timeouts-{module_store_kind}")
    pg_server = request.getfixturevalue("pg_server") if module_store_kind == "postgres" else None
    servers = Servers(tmp, module_store_kind, pg_server)
    workers = Workers(tmp, tmp / "side.log", None)
    try:
        server = servers()
        # PostgreSQL: a second orchestrator on the same database serves the children's worker.
        other = servers() if module_store_kind == "postgres" else server
        parents = workers(WORKER, api_url=server.url, name="parents", env={"SERVE": "parents"})
        children = workers(WORKER, api_url=other.url, name="children", env={"SERVE": "children"})
        yield Shared(server, tmp / "side.log", parents, children, other)
    finally:
        for process in workers.started:
            process.stop(timeout=5)
        servers.close()


@pytest.fixture
async def api(shared: Shared) -> AsyncIterator[PolosClient]:
    """A client of the shared orchestrator."""
    async with PolosClient(shared.server.url) as polos_client:
        yield polos_client


# ---------------------------------------------------------------------- run timeouts


async def test_run_timeout__a_hanging_step_fails_the_execution_and_its_coroutine_stops(
    shared: Shared, api: PolosClient
) -> None:
    client, side_log = api, shared.side_log
    own = await client.invoke("tw_hang")  # @workflow(timeout=1.5)
    given = await client.invoke("tw_hang_free", run_timeout=1.0)  # per invocation
    wait_until(
        lambda: (
            logged(side_log, f"hang start {own.id}") and logged(side_log, f"hang start {given.id}")
        ),
        what="both to hang",
    )
    running = await client.get_execution(given.id)
    assert running.run_timeout_ms == 1000 and running.deadline_at is not None

    for handle, limit in ((own, "1.5"), (given, "1")):
        with pytest.raises(WorkflowTimeoutError) as caught:
            await handle.result(timeout=10)
        assert caught.value.error_type == TIMEOUT_TYPE
        assert f"run timeout of {limit} s exceeded" in caught.value.error_message
        execution = await client.get_execution(handle.id)
        assert (execution.status, execution.deadline_at, execution.worker_id) == (
            FAILED,
            None,
            None,
        )
        assert [a.outcome for a in execution.attempts] == ["timed_out"]
        assert execution.completed_at is not None and execution.started_at is not None
        took = execution.completed_at - execution.started_at
        assert float(limit) * 1000 <= took < float(limit) * 1000 + 1500, took
        # The coroutine got the cancellation at the hanging step; the next step never ran.
        wait_until(lambda h=handle: logged(side_log, f"workflow-saw ExecutionCancelled {h.id}"))
        assert not logged(side_log, f"after {handle.id}")
        assert not logged(side_log, f"hang end {handle.id}")
    wait_until(
        lambda: (
            f"execution {given.id} cancelled: run timeout of 1 s exceeded"
            in shared.parents.output()
        ),
        what="the worker to stop it",
    )


async def test_run_timeout__time_parked_at_a_wait_does_not_count(
    shared: Shared, api: PolosClient
) -> None:
    client, side_log = api, shared.side_log
    handle = await client.invoke("tw_suspend")  # timeout=1.0

    async def parked() -> bool:
        return (await client.get_execution(handle.id)).status == WAITING

    await eventually(parked, "the suspend")
    parked_at = time.monotonic()
    waiting = await client.get_execution(handle.id)
    assert waiting.deadline_at is None  # the clock is stopped while it waits
    await asyncio.sleep(max(0.0, 1.6 - (time.monotonic() - parked_at)))  # past the timeout
    assert (await client.get_execution(handle.id)).status == WAITING

    await client.resume(handle.id, "approval", True)

    assert await handle.result(timeout=10) == "approved=True"
    assert logged(side_log, f"b {handle.id}")


async def test_run_timeout__with_timeout_counts_waits_it_times_out_while_suspended(
    api: PolosClient,
) -> None:
    client = api
    handle = await client.invoke("tw_wall")  # timeout=1.0, timeout_counts_waits=True

    execution = await status_of(client, handle.id, "waiting", "failed")
    assert execution.timeout_counts_waits and execution.run_timeout_ms == 1000
    with pytest.raises(WorkflowTimeoutError) as caught:
        await handle.result(timeout=10)

    assert "time spent waiting included" in caught.value.error_message
    assert await waits_of(client, handle.id) == []  # the wait was dropped
    with pytest.raises(NotWaitingError):
        await client.resume(handle.id, "approval", True)
    final = await client.get_execution(handle.id)
    assert (final.status, final.deadline_at) == (FAILED, None)
    assert final.attempts == []  # no attempt was running when it timed out


async def test_run_timeout__running_time_of_a_crashed_attempt_still_counts(
    client: PolosClient, start_worker, side_log: Path
) -> None:
    worker_a = start_worker(WORKER, name="a")
    handle = await client.invoke("tw_crash")  # one 2.5 s step, timeout 3 s
    wait_until(lambda: count_lines(side_log, "slow start") == 1, what="the step to start")
    await asyncio.sleep(1.5)
    worker_a.kill()
    start_worker(WORKER, name="b")

    with pytest.raises(WorkflowTimeoutError):
        await handle.result(timeout=15)

    # The second attempt alone (2.5 s) fits in 3 s: only the first attempt's 1.5 s counted
    # against it made it time out.
    assert count_lines(side_log, "slow start") == 2
    assert count_lines(side_log, "slow end") == 0
    execution = await client.get_execution(handle.id)
    assert [a.outcome for a in execution.attempts] == ["crashed", "timed_out"]


# ---------------------------------------------------------------------- step timeouts


async def test_step_timeout__async_and_sync_steps_with_and_without_retries(
    shared: Shared, api: PolosClient
) -> None:
    client, side_log = api, shared.side_log
    handle = await client.invoke("tw_step_timeouts")

    result = await handle.result(timeout=20)

    assert result == {
        "async": ["polos.StepTimeoutError", 2],
        "sync": ["polos.StepTimeoutError", 1],
        "quick": "ok",
    }
    assert count(side_log, f"async start {handle.id}") == 2  # one per attempt
    assert count(side_log, f"async end {handle.id}") == 0  # each attempt was cancelled
    steps = {s.key: s for s in await client.list_steps(handle.id)}
    assert steps["async"].error is not None and steps["async"].attempts == 2
    assert (
        steps["sync"].error is not None and "timed out after 0.2 s" in steps["sync"].error.message
    )
    # The sync step's thread could not be stopped: it finishes in the background.
    wait_until(lambda: logged(side_log, f"sync end {handle.id}"), what="the thread to finish")


# ---------------------------------------------------------------------- cancellation


async def test_cancel__except_exception_cannot_keep_a_running_execution_alive(
    shared: Shared, api: PolosClient
) -> None:
    client, side_log = api, shared.side_log
    handle = await client.invoke("tw_careless")
    wait_until(lambda: logged(side_log, f"long start {handle.id}"), what="the long step")

    before = int(time.time() * 1000)
    cancelled = await client.cancel(handle.id, "no longer needed", by="alice")

    assert cancelled.status == CANCELLED
    assert cancelled.cancelled_by == "alice: no longer needed"
    assert cancelled.completed_at is not None and cancelled.completed_at >= before
    started = time.monotonic()
    wait_until(lambda: logged(side_log, f"careless-finally {handle.id}"), what="finally")
    assert time.monotonic() - started < 2  # promptly
    assert logged(side_log, f"careless-saw ExecutionCancelled {handle.id}")
    assert not logged(side_log, f"swallowed ExecutionCancelled {handle.id}")
    assert not logged(side_log, f"after {handle.id}")
    with pytest.raises(WorkflowCancelledError):
        await handle.result(timeout=5)
    shown = run_cli("executions", "show", handle.id, api_url=shared.server.url)
    assert "cancelled by alice: no longer needed at" in shown.stdout


async def test_cancel__reaches_a_child_on_another_worker_and_drops_pending_waits(
    shared: Shared, api: PolosClient
) -> None:
    client, side_log, children = api, shared.side_log, shared.children
    parent = await client.invoke("tw_parent")
    kids = [child_execution_id(parent.id, "kids", i) for i in (0, 1)]
    wait_until(lambda: logged(side_log, f"kid start {kids[0]}"), what="the child's step")
    await status_of(client, kids[1], "waiting")
    assert sorted(await waits_of(client, parent.id, *kids)) == sorted([parent.id, kids[1]])

    await client.cancel(parent.id, by="ops")

    wait_until(lambda: logged(side_log, f"kid-finally {kids[0]} {children.pid}"), what="the child")
    assert not logged(side_log, f"kid end {kids[0]}")
    for kid in kids:
        execution = await client.get_execution(kid)
        assert execution.status == CANCELLED
        assert execution.cancelled_by == f"ancestor {parent.id} cancelled by ops"
    assert await waits_of(client, parent.id, *kids) == []
    wait_until(
        lambda: f"execution {kids[0]} cancelled" in children.output(), what="the worker's log"
    )


async def test_run_timeout__counting_waits_a_parked_parent_times_out_and_stops_its_children(
    shared: Shared, api: PolosClient
) -> None:
    client, side_log, children = api, shared.side_log, shared.children
    parent = await client.invoke("tw_parent", run_timeout=1.5, timeout_counts_waits=True)
    kids = [child_execution_id(parent.id, "kids", i) for i in (0, 1)]
    wait_until(lambda: logged(side_log, f"kid start {kids[0]}"), what="the child's step")

    with pytest.raises(WorkflowTimeoutError):
        await parent.result(timeout=10)

    wait_until(lambda: logged(side_log, f"kid-finally {kids[0]} {children.pid}"), what="the child")
    for kid in kids:
        execution = await client.get_execution(kid)
        assert (execution.status, execution.cancelled_by) == (
            CANCELLED,
            f"ancestor {parent.id} timed out",
        )
    assert await waits_of(client, parent.id, *kids) == []


# ---------------------------------------------------------------------- bad input


def test_bad_input__invalid_timeouts_and_cancel_bodies_are_422(shared: Shared) -> None:
    server = shared.server
    api = server.url + "/api/v1"
    for bad in (-1, 0, 10**9, "soon"):
        response = httpx.post(
            f"{api}/workflows/anything/executions", json={"run_timeout_seconds": bad}, timeout=5
        )
        assert response.status_code == 422, response.text
        assert "run_timeout_seconds" in response.json()["message"]
    response = httpx.post(
        f"{api}/executions/batch",
        json={"items": [{"workflow_id": "x", "run_timeout_seconds": -5}]},
        timeout=5,
    )
    assert response.status_code == 422
    response = httpx.post(f"{api}/executions/some-id/cancel", json={"by": ""}, timeout=5)
    assert response.status_code == 422
    done = run_cli("run", "anything", "--run-timeout", "-3", api_url=server.url)
    assert done.returncode != 0 and "--run-timeout" in done.stderr
