"""``ctx.emit`` end to end: live events reach followers of a topic, in order, once.

Real processes (an orchestrator on each store, ``workers/emit_worker.py``), plus the
gateway with a real store and fake sockets for the fencing rules.
"""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from polos import ExecutionStatus, PolosClient
from polos.orchestrator import Gateway, OrchestratorSettings
from polos.protocol import (
    DEFAULT_PROJECT_ID,
    Complete,
    Emit,
    Event,
    Hello,
    Task,
    WorkflowSpec,
)
from polos.storage import Created, CreateExecution, WriteBatcher, open_store
from polos.testing._processes import ServerProcess
from tests.integration.conftest import WORKERS_DIR, side_lines, wait_until

pytestmark = pytest.mark.timeout(60)

EMIT_WORKER = WORKERS_DIR / "emit_worker.py"


async def follow_until_end(client: PolosClient, topic: str) -> list[Event]:
    """Follow ``topic`` from the start of its log until the workflow's ``{"end": true}``."""
    events: list[Event] = []
    stream = client.events.stream(topic, after=0)
    try:
        async for event in stream:
            events.append(event)
            if event.data == {"end": True}:
                return events
    finally:
        await stream.aclose()
    return events


async def whole_log(client: PolosClient, topic: str) -> list[Event]:
    events: list[Event] = []
    after: int | None = 0
    while after is not None:
        page = await client.events.list(topic, after=after, limit=100)
        events += page.items
        after = page.next_after
    return events


def check_stream(events: list[Event], count: int, execution_id: str) -> None:
    """Every emitted item once, in order, then the end event; seqs without gaps."""
    assert [e.data for e in events[:-1]] == [{"i": i} for i in range(count)]
    assert events[-1].data == {"end": True}
    assert [e.seq for e in events] == list(range(1, count + 2))
    assert {e.source_execution_id for e in events} == {execution_id}
    assert all(e.idempotency_key is None for e in events[:-1])  # emits have no key


async def test_emit__followers_get_every_item_once_and_in_order(
    server: ServerProcess, client: PolosClient, start_worker
) -> None:
    start_worker(EMIT_WORKER)
    topic = f"live/{uuid.uuid4().hex}"
    early = asyncio.create_task(follow_until_end(client, topic))  # follows before the run starts

    handle = await client.invoke("live_emitter", {"count": 200, "steps": 4, "topic": topic})
    result = await handle.result(timeout=30)
    live = await asyncio.wait_for(early, 30)
    late = await asyncio.wait_for(follow_until_end(client, topic), 30)  # after the run

    assert result == {"topic": topic, "emitted": 200}
    check_stream(live, 200, handle.id)
    assert [(e.id, e.seq, e.data) for e in late] == [(e.id, e.seq, e.data) for e in live]
    assert [(e.seq, e.data) for e in await whole_log(client, topic)] == [
        (e.seq, e.data) for e in live
    ]
    steps = await client.list_steps(handle.id)
    assert [s.key for s in steps] == ["s0", "s1", "s2", "s3", "end"]
    assert [s.seq for s in steps] == [1, 2, 3, 4, 5]


async def test_emit__default_topic_is_per_execution_and_concurrent_runs_do_not_mix(
    server: ServerProcess, client: PolosClient, start_worker
) -> None:
    start_worker(EMIT_WORKER)
    handles = [await client.invoke("live_emitter", {"count": 60, "steps": 3}) for _ in range(3)]
    for handle in handles:
        assert await handle.result(timeout=30) == {"topic": f"live/{handle.id}", "emitted": 60}
    for handle in handles:
        events = await asyncio.wait_for(follow_until_end(client, f"live/{handle.id}"), 30)
        check_stream(events, 60, handle.id)


async def test_emit__a_zombie_worker_cannot_stream_after_losing_its_lease(
    make_server, start_worker, side_log: Path, tmp_path: Path
) -> None:
    server: ServerProcess = make_server(lease_ms=1500, heartbeat_ms=300)
    worker_a = start_worker(EMIT_WORKER, api_url=server.url, name="a")
    marker = tmp_path / "lease-lost"
    async with PolosClient(server.url) as client:
        handle = await client.invoke("emit_until_marker", {"marker": str(marker)})
        topic = f"live/{handle.id}"
        wait_until(
            lambda: sum(" early " in line for line in side_lines(side_log)) >= 5,
            what="attempt 1 to emit",
        )
        worker_a.signal(signal.SIGSTOP)

        async def requeued() -> bool:
            return (await client.get_execution(handle.id)).crashed_attempts == 1

        for _ in range(400):
            if await requeued():
                break
            await asyncio.sleep(0.05)
        assert await requeued(), "the stopped worker's lease never ran out"
        marker.touch()  # from now on, every emit says "late"
        worker_b = start_worker(EMIT_WORKER, api_url=server.url, name="b")
        assert await handle.result(timeout=30) == 2
        worker_b.stop(timeout=5)

        worker_a.signal(signal.SIGCONT)
        start_worker.wait_connected(worker_a, server.url)
        # A barrier: once worker A (the only worker now) has run something new, the
        # orchestrator has handled everything A sent before it.
        check = await client.invoke("live_emitter", {"count": 1, "steps": 1})
        await check.result(timeout=30)
        events = await whole_log(client, topic)
        execution = await client.get_execution(handle.id)
        steps = await client.list_steps(handle.id)

    zombie_tries = [
        line for line in side_lines(side_log) if line.startswith("emit 1 ") and " late " in line
    ]
    assert zombie_tries, "the zombie attempt never tried to emit after its lease was lost"
    assert execution.status == ExecutionStatus.COMPLETED
    first = [e.data for e in events if e.data["attempt"] == 1]
    second = [e.data for e in events if e.data["attempt"] == 2]
    assert first and not any(d["late"] for d in first)  # the zombie's late emits were dropped
    assert [d["i"] for d in first] == list(range(len(first)))
    assert [d["i"] for d in second] == list(range(10)) and all(d["late"] for d in second)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert [s.key for s in steps] == ["start"]


# ---------------------------------------------------------------------- gateway fencing


class Recorder:
    """A fake worker socket that keeps what the gateway sends."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send_text(self, data: str) -> None:
        self.sent.append(data)

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        pass


@pytest.fixture
async def gateway(db_url: str) -> AsyncIterator[Gateway]:
    store = await open_store(db_url)
    await store.ensure_project(DEFAULT_PROJECT_ID, "Default")
    batcher = WriteBatcher(store)
    batcher.start()
    gw = Gateway(store, batcher, OrchestratorSettings(database_url=db_url))
    yield gw
    await gw.emits.stop()
    await batcher.stop()
    await store.close()


async def running_execution(gateway: Gateway, worker_id: str = "w-1"):
    hello = Hello(worker_id=worker_id, workflows=[WorkflowSpec(id="wf", fingerprint="f")])
    connection = Recorder()
    session = await gateway._register(connection, hello, DEFAULT_PROJECT_ID)
    created = await gateway.batcher.submit(
        CreateExecution(project_id=DEFAULT_PROJECT_ID, workflow_id="wf", payload_json="null")
    )
    assert isinstance(created, Created)
    await gateway._dispatch_round()
    tasks = [Task.model_validate_json(m) for m in connection.sent if '"type":"task"' in m]
    assert [t.execution_id for t in tasks] == [created.execution.id]
    return session, tasks[0]


def emit(task: Task, items: list[object], *, epoch: int | None = None, topic: str = "t") -> Emit:
    return Emit(
        execution_id=task.execution_id,
        epoch=task.epoch if epoch is None else epoch,
        topic=topic,
        items=items,
    )


async def test_gateway__emits_of_the_lease_holder_are_logged_before_its_result(gateway):
    session, task = await running_execution(gateway)
    for start in range(0, 90, 30):
        gateway.emits.accept(session, emit(task, list(range(start, start + 30))))
    gateway.emits.accept(session, emit(task, ["stale epoch"], epoch=task.epoch - 1))
    gateway.emits.accept(session, emit(task, ["other topic"], topic="u"))

    await gateway._handle_write(
        session, Complete(req=1, execution_id=task.execution_id, epoch=task.epoch, result="r")
    )
    # The result is recorded only once the emits received before it are in the log.
    logged = await gateway.store.list_events(DEFAULT_PROJECT_ID, "t", limit=500)
    assert [e.data for e in logged] == list(range(90))
    assert {e.source_execution_id for e in logged} == {task.execution_id}
    other = await gateway.store.list_events(DEFAULT_PROJECT_ID, "u")
    assert [e.data for e in other] == ["other topic"]

    gateway.emits.accept(session, emit(task, ["after the end"]))  # the lease is gone
    await gateway.emits.settled(task.execution_id)
    assert len(await gateway.store.list_events(DEFAULT_PROJECT_ID, "t", limit=500)) == 90
    assert gateway.emits.dropped == 2


async def test_gateway__emits_are_dropped_once_the_database_says_the_lease_moved(gateway):
    session, task = await running_execution(gateway)
    # Another orchestrator expired this worker: its session here does not know yet.
    await gateway.store.worker_gone(session.worker_id)
    assert session.running == {task.execution_id: task.epoch}

    gateway.emits.accept(session, emit(task, [1, 2, 3]))
    await gateway.emits.settled(task.execution_id)

    assert await gateway.store.list_events(DEFAULT_PROJECT_ID, "t") == []
    assert gateway.emits.dropped == 3
