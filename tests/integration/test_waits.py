"""Waiting end to end: suspend/resume, durable timers, events, triggers and child workflows.

A real orchestrator (SQLite and PostgreSQL), the real worker script
``workers/waits_worker.py`` and the real ``PolosClient``. Every wait is observed
through the public API (``list_waits``, execution status, the step log), never by
sleeping for a guessed time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from polos import (
    ApiError,
    Event,
    Execution,
    ExecutionNotFoundError,
    ExecutionStatus,
    NotWaitingError,
    PolosClient,
    WaitInfo,
    WaitKind,
    WorkflowFailedError,
)
from polos.sdk import child_execution_id
from polos.testing._processes import ServerProcess
from tests.integration.conftest import count_lines, eventually, side_lines
from tests.integration.workers import waits_worker as app

pytestmark = pytest.mark.timeout(60)

WAITS_WORKER = Path(__file__).parent / "workers" / "waits_worker.py"

T = TypeVar("T")

WAITING = ExecutionStatus.WAITING
COMPLETED = ExecutionStatus.COMPLETED
CANCELLED = ExecutionStatus.CANCELLED


# ---------------------------------------------------------------------- helpers


async def waits_of(client: PolosClient, execution_id: str) -> list[WaitInfo]:
    """The waits of one execution (every kind)."""
    page = await client.list_waits(limit=500)
    return [w for w in page.items if w.execution_id == execution_id]


async def parked_at(
    client: PolosClient, execution_id: str, step_key: str, kind: WaitKind | None = None
) -> WaitInfo:
    """Wait until ``execution_id`` is ``waiting`` at ``step_key``; return its wait."""

    async def probe() -> WaitInfo | None:
        for wait in await waits_of(client, execution_id):
            if wait.step_key == step_key and (kind is None or wait.kind == kind):
                execution = await client.get_execution(execution_id)
                return wait if execution.status == WAITING else None
        return None

    return await eventually(probe, f"execution {execution_id} to wait at {step_key!r}")


async def status_of(client: PolosClient, execution_id: str, *statuses: str) -> Execution:
    """Wait until the execution has one of ``statuses``; return it."""

    async def probe() -> Execution | None:
        execution = await client.get_execution(execution_id)
        return execution if execution.status in statuses else None

    return await eventually(probe, f"execution {execution_id} to be {'/'.join(statuses)}")


async def executions_of(client: PolosClient, workflow_id: str) -> list[Execution]:
    """Every execution of a workflow (oldest first)."""
    page = await client.list_executions(workflow_id=workflow_id, limit=500)
    assert page.next_cursor is None
    return list(reversed(page.items))


async def take(stream: AsyncIterator[Event], n: int, timeout: float = 15.0) -> list[Event]:
    """The next ``n`` events of a stream."""

    async def collect() -> list[Event]:
        return [await anext(stream) for _ in range(n)]

    return await asyncio.wait_for(collect(), timeout)


# ---------------------------------------------------------------------- suspend and resume


async def test_suspend__waiting_executions_hold_no_worker_slot(
    client: PolosClient, start_worker
) -> None:
    start_worker(WAITS_WORKER, env={"MAX_CONCURRENT": "1"})

    handles = [await client.invoke("approve", {}) for _ in range(5)]
    for handle in handles:
        await parked_at(client, handle.id, "approval", WaitKind.SUSPEND)

    # The single slot is free: another workflow runs while five are suspended.
    assert await (await client.invoke("double", 5)).result(timeout=20) == 10

    page = await client.list_waits(kind="suspend")
    assert sorted(w.execution_id for w in page.items) == sorted(h.id for h in handles)
    for wait in page.items:
        assert wait.workflow_id == "approve"
        assert wait.kind == WaitKind.SUSPEND
        assert wait.step_key == "approval"
        assert wait.data == {"ask": "ok?"}
        assert wait.expires_at is None
        assert wait.topic is None
    for handle in handles:
        execution = await client.get_execution(handle.id)
        assert execution.status == WAITING
        assert execution.worker_id is None  # parked: no worker holds it
    paged: list[str] = []
    cursor: str | None = None
    while True:  # oldest first, two at a time
        part = await client.list_waits(kind=WaitKind.SUSPEND, limit=2, cursor=cursor)
        paged += [w.execution_id for w in part.items]
        if part.next_cursor is None:
            break
        cursor = part.next_cursor
    assert paged == [h.id for h in handles]
    assert (await client.list_waits(kind="suspend", workflow_id="double")).items == []
    assert (await client.list_waits(kind="event")).items == []

    for i, handle in enumerate(handles):
        await client.resume(handle.id, "approval", {"i": i})
    results = await client.wait_many([h.id for h in handles], timeout=20)
    assert [e.result for e in results] == [
        {"outcome": "resumed", "data": {"i": i}} for i in range(5)
    ]
    assert (await client.list_waits()).items == []


async def test_suspend__resume_delivers_data_on_any_worker(
    client: PolosClient, start_worker
) -> None:
    first = start_worker(WAITS_WORKER, name="first")
    handle = await client.invoke("approve", {})
    await parked_at(client, handle.id, "approval", WaitKind.SUSPEND)
    first.stop(timeout=10)
    assert not first.alive

    start_worker(WAITS_WORKER, name="second")  # the only worker from now on
    resumed = await client.resume(handle.id, "approval", {"approved": True, "by": "ann"})

    assert resumed.id == handle.id
    assert resumed.status == ExecutionStatus.QUEUED
    assert await handle.result(timeout=20) == {
        "outcome": "resumed",
        "data": {"approved": True, "by": "ann"},
    }
    steps = await client.list_steps(handle.id)
    assert [(s.key, s.kind) for s in steps] == [("approval", "suspend")]
    assert steps[0].output["data"] == {"approved": True, "by": "ann"}
    assert steps[0].error is None


async def test_suspend__survives_worker_and_orchestrator_restart(
    server: ServerProcess, client: PolosClient, start_worker
) -> None:
    worker = start_worker(WAITS_WORKER)
    handle = await client.invoke("approve", {})
    await parked_at(client, handle.id, "approval", WaitKind.SUSPEND)

    worker.stop(timeout=10)
    server.stop(timeout=10)
    server.restart()
    start_worker(WAITS_WORKER, name="after-restart")

    [wait] = (await client.list_waits(kind="suspend")).items
    assert (wait.execution_id, wait.step_key) == (handle.id, "approval")
    await client.resume(handle.id, "approval", {"ok": 1})
    assert await handle.result(timeout=20) == {"outcome": "resumed", "data": {"ok": 1}}


async def test_suspend__second_resume_is_refused_and_changes_nothing(
    client: PolosClient, start_worker
) -> None:
    start_worker(WAITS_WORKER)
    handle = await client.invoke("approve", {})
    await parked_at(client, handle.id, "approval")

    await client.resume(handle.id, "approval", {"n": 1})
    with pytest.raises(NotWaitingError) as early:  # queued or running again: not waiting
        await client.resume(handle.id, "approval", {"n": 2})
    assert await handle.result(timeout=20) == {"outcome": "resumed", "data": {"n": 1}}
    before = await client.get_execution(handle.id)
    steps_before = await client.list_steps(handle.id)

    with pytest.raises(NotWaitingError) as late:
        await client.resume(handle.id, "approval", {"n": 3})

    for refused in (early.value, late.value):
        assert refused.status_code == 409
        assert refused.code == "not_waiting"
    assert "already resumed" in late.value.message
    assert "'approval'" in late.value.message
    after = await client.get_execution(handle.id)
    assert after.status == COMPLETED
    assert after.result == before.result == {"outcome": "resumed", "data": {"n": 1}}
    assert after.attempt == before.attempt
    assert await client.list_steps(handle.id) == steps_before


async def test_suspend__concurrent_resumes_exactly_one_wins(
    client: PolosClient, start_worker
) -> None:
    start_worker(WAITS_WORKER)
    handle = await client.invoke("approve", {})
    await parked_at(client, handle.id, "approval")

    outcomes = await asyncio.gather(
        *(client.resume(handle.id, "approval", {"who": i}) for i in range(8)),
        return_exceptions=True,
    )

    winners = [i for i, o in enumerate(outcomes) if isinstance(o, Execution)]
    losers = [o for o in outcomes if not isinstance(o, Execution)]
    assert len(winners) == 1, outcomes
    assert all(isinstance(o, NotWaitingError) for o in losers), losers
    assert await handle.result(timeout=20) == {"outcome": "resumed", "data": {"who": winners[0]}}


async def test_suspend__resume_at_wrong_step_names_the_actual_wait(
    client: PolosClient, start_worker
) -> None:
    start_worker(WAITS_WORKER)
    approval = await client.invoke("approve", {})
    waiter = await client.invoke("event_waiter", {"topic": "wrong-step/ev"})
    await parked_at(client, approval.id, "approval")
    await parked_at(client, waiter.id, "ev", WaitKind.EVENT)

    with pytest.raises(NotWaitingError) as wrong_key:
        await client.resume(approval.id, "nope", {"approved": True})
    with pytest.raises(NotWaitingError) as not_a_suspend:
        await client.resume(waiter.id, "ev", {"approved": True})

    assert wrong_key.value.status_code == 409
    assert "'nope'" in wrong_key.value.message
    assert "'approval'" in wrong_key.value.message
    assert "suspend" in wrong_key.value.message
    assert "'ev'" in not_a_suspend.value.message
    assert "event" in not_a_suspend.value.message
    # Nothing changed: both still wait where they did.
    assert [w.step_key for w in await waits_of(client, approval.id)] == ["approval"]
    assert [w.step_key for w in await waits_of(client, waiter.id)] == ["ev"]
    assert (await client.get_execution(approval.id)).status == WAITING

    await client.resume(approval.id, "approval", {"approved": True})
    assert await approval.result(timeout=20) == {"outcome": "resumed", "data": {"approved": True}}
    await client.cancel(waiter.id)


async def test_suspend__resume_of_unknown_execution_raises_execution_not_found(
    client: PolosClient, start_worker
) -> None:
    start_worker(WAITS_WORKER)

    with pytest.raises(ExecutionNotFoundError) as info:
        await client.resume("00000000-0000-0000-0000-000000000000", "approval", {})

    assert info.value.status_code == 404
    assert info.value.code == "execution_not_found"


async def test_suspend__timeout_raises_wait_timeout_error_and_late_resume_is_refused(
    client: PolosClient, start_worker
) -> None:
    start_worker(WAITS_WORKER)
    handle = await client.invoke("approve", {"timeout": 0.5})
    wait = await parked_at(client, handle.id, "approval", WaitKind.SUSPEND)
    assert wait.expires_at is not None

    result = await handle.result(timeout=20)

    assert result["outcome"] == "timed_out"
    assert "timed out" in result["message"]
    assert "'approval'" in result["message"]
    [step] = await client.list_steps(handle.id)
    assert step.key == "approval"
    assert step.error is not None
    assert step.error.type == "polos.WaitTimeoutError"
    assert await waits_of(client, handle.id) == []

    with pytest.raises(NotWaitingError) as late:
        await client.resume(handle.id, "approval", {"approved": True})
    assert late.value.status_code == 409
    assert "timed out" in late.value.message
    assert (await client.get_execution(handle.id)).result == result


async def test_suspend__repeated_key_is_resumed_by_its_base_key(
    client: PolosClient, start_worker
) -> None:
    start_worker(WAITS_WORKER)
    handle = await client.invoke("approve_twice", {})
    first = await parked_at(client, handle.id, "approval", WaitKind.SUSPEND)
    assert first.data == {"round": 1}

    with pytest.raises(NotWaitingError) as too_early:
        await client.resume(handle.id, "approval#2", {"a": 0})
    assert "'approval'" in too_early.value.message

    await client.resume(handle.id, "approval", {"a": 1})
    second = await parked_at(client, handle.id, "approval#2", WaitKind.SUSPEND)
    assert second.data == {"round": 2}
    await client.resume(handle.id, "approval", {"a": 2})  # the base key names approval#2 now

    assert await handle.result(timeout=20) == [{"a": 1}, {"a": 2}]
    steps = await client.list_steps(handle.id)
    assert [(s.key, s.output["data"]) for s in steps] == [
        ("approval", {"a": 1}),
        ("approval#2", {"a": 2}),
    ]
    with pytest.raises(NotWaitingError) as done:
        await client.resume(handle.id, "approval", {"a": 3})
    assert "already resumed" in done.value.message


async def test_suspend__resume_after_cancel_is_refused(client: PolosClient, start_worker) -> None:
    start_worker(WAITS_WORKER)
    handle = await client.invoke("approve", {})
    await parked_at(client, handle.id, "approval")

    cancelled = await client.cancel(handle.id, reason="changed plans")
    assert cancelled.status == CANCELLED
    assert await waits_of(client, handle.id) == []

    with pytest.raises(NotWaitingError) as refused:
        await client.resume(handle.id, "approval", {"approved": True})
    assert "cancelled" in refused.value.message
    assert (await client.get_execution(handle.id)).status == CANCELLED


async def test_suspend__resume_racing_the_timeout_has_exactly_one_outcome(
    client: PolosClient, start_worker
) -> None:
    start_worker(WAITS_WORKER)
    for delay in (0.0, 0.25, 0.35, 0.4, 0.45, 0.6):
        handle = await client.invoke("approve", {"timeout": 0.4})
        await parked_at(client, handle.id, "approval")
        await asyncio.sleep(delay)
        try:
            await client.resume(handle.id, "approval", {"delay": delay})
            resumed = True
        except NotWaitingError as exc:
            assert "timed out" in exc.message
            resumed = False

        result = await handle.result(timeout=20)

        if resumed:
            assert result == {"outcome": "resumed", "data": {"delay": delay}}
        else:
            assert result["outcome"] == "timed_out"
        [step] = await client.list_steps(handle.id)
        assert (step.error is None) == resumed


async def test_suspend__a_step_still_running_forbids_waiting(
    client: PolosClient, start_worker
) -> None:
    start_worker(WAITS_WORKER)

    result = await (await client.invoke("wait_while_running", {})).result(timeout=20)

    assert "'too_soon'" in result["message"]
    assert "'slow'" in result["message"]
    assert (await client.list_waits()).items == []


async def test_sync_workflow__every_waiting_twin_works(client: PolosClient, start_worker) -> None:
    start_worker(WAITS_WORKER)
    handle = await client.invoke("sync_waits", {"topic": "sync/t", "seconds": 0.1})

    approval = await parked_at(client, handle.id, "approval", WaitKind.SUSPEND)
    assert approval.data == {"sync": True}
    await client.resume(handle.id, "approval", {"yes": 1})
    await parked_at(client, handle.id, "ev", WaitKind.EVENT)
    await client.events.publish("sync/t", {"e": 1})

    assert await handle.result(timeout=20) == {
        "decision": {"yes": 1},
        "event": {"e": 1},
        "published_seq": 1,
        "doubled": 10,
    }
    [out] = (await client.events.list("sync/t/out")).items
    assert (out.data, out.source_execution_id) == ({"ok": 1}, handle.id)
    steps = await client.list_steps(handle.id)
    assert [(s.key, s.kind) for s in steps] == [
        ("approval", "suspend"),
        ("nap", "sleep"),
        ("ev", "wait_event"),
        ("pub", "publish"),
        ("child", "invoke_wait"),
    ]


async def test_suspend__state_survives_the_waits_and_replays(
    client: PolosClient, start_worker
) -> None:
    start_worker(WAITS_WORKER)
    handle = await client.invoke("stateful_waits", {"topic": "state/t"})

    await parked_at(client, handle.id, "one", WaitKind.SUSPEND)
    assert (await client.get_execution(handle.id)).state == {"count": 1}
    await client.resume(handle.id, "one")
    await parked_at(client, handle.id, "ev", WaitKind.EVENT)
    assert (await client.get_execution(handle.id)).state == {"count": 111}
    await client.events.publish("state/t", {})

    assert await handle.result(timeout=20) == {"count": 1111}  # no change applied twice
    steps = await client.list_steps(handle.id)
    assert [(s.key, s.state) for s in steps] == [
        ("one", {"count": 1}),
        ("mark", {"count": 11}),
        ("ev", {"count": 111}),
    ]


async def test_suspend__a_child_suspends_and_its_parent_waits_for_it(
    client: PolosClient, start_worker
) -> None:
    start_worker(WAITS_WORKER)
    parent = await client.invoke("call_child", {"workflow": "approve", "payload": {}})
    child = child_execution_id(parent.id, "child", 0)

    approval = await parked_at(client, child, "approval", WaitKind.SUSPEND)
    assert (approval.workflow_id, approval.root_id) == ("approve", parent.id)
    [parent_wait] = await waits_of(client, parent.id)
    assert (parent_wait.kind, parent_wait.pending_children) == (WaitKind.CHILD, 1)
    with pytest.raises(NotWaitingError):  # the parent waits for its child, not for a resume
        await client.resume(parent.id, "child", {"ok": True})

    await client.resume(child, "approval", {"ok": True})

    assert await parent.result(timeout=20) == {
        "type": "dict",
        "result": {"outcome": "resumed", "data": {"ok": True}},
    }


# ---------------------------------------------------------------------- timers


async def test_sleep__short_sleep_runs_in_the_worker(client: PolosClient, start_worker) -> None:
    start_worker(WAITS_WORKER)

    handle = await client.invoke("sleeper", {"seconds": 0.3})
    result = await handle.result(timeout=20)

    assert result["woke"] >= result["started"] + 0.3
    execution = await client.get_execution(handle.id)
    assert execution.attempt == 1  # never parked
    nap = next(s for s in await client.list_steps(handle.id) if s.key == "nap")
    assert nap.kind == "sleep"
    assert nap.output["until"] - nap.started_at == 300


async def test_sleep__long_sleep_parks_and_wakes_on_time(
    client: PolosClient, start_worker, side_log: Path
) -> None:
    start_worker(WAITS_WORKER)

    handle = await client.invoke("sleeper", {"seconds": 6})
    wait = await parked_at(client, handle.id, "nap", WaitKind.SLEEP)
    execution = await client.get_execution(handle.id)
    assert execution.status == WAITING
    assert execution.worker_id is None
    [listed] = (await client.list_waits(kind="sleep")).items
    assert listed.execution_id == handle.id
    assert listed.expires_at is not None
    assert listed.expires_at - listed.created_at >= 5000  # due six seconds after it started

    result = await handle.result(timeout=30)

    assert result["woke"] >= result["started"] + 6
    assert wait.expires_at is not None
    assert result["woke"] * 1000 >= wait.expires_at
    nap = next(s for s in await client.list_steps(handle.id) if s.key == "nap")
    assert nap.output == {"until": wait.expires_at}
    assert nap.output["until"] - nap.started_at == 6000
    assert (await client.get_execution(handle.id)).attempt == 2  # parked, then woken
    assert count_lines(side_log, "woke " + handle.id) == 1
    assert (await client.list_waits()).items == []


async def test_sleep__threshold_setting_parks_a_short_sleep(
    client: PolosClient, start_worker
) -> None:
    start_worker(WAITS_WORKER, env={"POLOS_WAIT_THRESHOLD_SECONDS": "0"})

    handle = await client.invoke("sleeper", {"seconds": 1.5})
    wait = await parked_at(client, handle.id, "nap", WaitKind.SLEEP)
    result = await handle.result(timeout=20)

    assert wait.expires_at is not None
    assert result["woke"] >= result["started"] + 1.5
    assert result["woke"] * 1000 >= wait.expires_at


async def test_wait_until__past_returns_at_once_and_wait_for_sleeps(
    client: PolosClient, start_worker
) -> None:
    start_worker(WAITS_WORKER)
    past = float(int(time.time()) - 3600)  # whole seconds: exact in ms

    handle = await client.invoke("timers", {"past": past, "seconds": 0.25})
    result = await handle.result(timeout=20)

    steps = {s.key: s for s in await client.list_steps(handle.id)}
    assert steps["past"].kind == "sleep"
    assert steps["past"].output == {"until": round(past * 1000)}
    assert steps["short"].kind == "sleep"
    assert steps["short"].output["until"] - steps["short"].started_at == 250
    assert result["woke"] * 1000 >= steps["short"].output["until"]
    assert (await client.get_execution(handle.id)).attempt == 1


@pytest.mark.chaos
async def test_sleep__worker_killed_mid_sleep_resumes_the_same_sleep(
    client: PolosClient, start_worker, side_log: Path
) -> None:
    worker = start_worker(WAITS_WORKER)
    handle = await client.invoke("sleeper", {"seconds": 2})

    async def nap_recorded() -> list[Any]:
        return [s for s in await client.list_steps(handle.id) if s.key == "nap"]

    [nap] = await eventually(nap_recorded, "the in-process sleep to be recorded")
    worker.kill()
    start_worker(WAITS_WORKER, name="second")

    result = await handle.result(timeout=20)
    steps = {s.key: s for s in await client.list_steps(handle.id)}
    assert steps["nap"].output == nap.output  # the wake-up time was not moved
    assert result["woke"] * 1000 >= nap.output["until"]
    assert result["started"] * 1000 == steps["started"].output
    execution = await client.get_execution(handle.id)
    assert execution.crashed_attempts == 1
    assert count_lines(side_log, "woke " + handle.id) == 1


async def test_waits__survive_an_orchestrator_restart(
    server: ServerProcess, client: PolosClient, start_worker
) -> None:
    worker = start_worker(WAITS_WORKER, env={"POLOS_WAIT_THRESHOLD_SECONDS": "0"})
    waiter = await client.invoke("event_waiter", {"topic": "restart/t"})
    sleeper = await client.invoke("sleeper", {"seconds": 2})
    expiring = await client.invoke("approve", {"timeout": 0.5})
    await parked_at(client, waiter.id, "ev", WaitKind.EVENT)
    await parked_at(client, sleeper.id, "nap", WaitKind.SLEEP)
    await parked_at(client, expiring.id, "approval", WaitKind.SUSPEND)
    lone = await client.events.publish("bulk", {"k": 1})  # a trigger batch, due in 1 s
    assert lone.triggered == []

    worker.stop(timeout=10)
    server.stop(timeout=10)  # the timeout, and maybe the batch, fall due while it is down
    server.restart()
    start_worker(WAITS_WORKER, name="after-restart")
    published = await client.events.publish("restart/t", {"x": 1})

    assert await waiter.result(timeout=20) == {"outcome": "event", "seq": 1, "data": {"x": 1}}
    assert published.seq == 1
    result = await sleeper.result(timeout=20)
    assert result["woke"] >= result["started"] + 2
    assert (await expiring.result(timeout=20))["outcome"] == "timed_out"

    async def batch_started() -> list[Execution]:
        return await executions_of(client, "on_bulk")

    [bulk] = await eventually(batch_started, "the pending trigger batch to start")
    assert await client.result(bulk.id, timeout=20) == 1


# ---------------------------------------------------------------------- events


async def test_wait_for_event__only_events_published_after_the_step_was_reached(
    client: PolosClient, start_worker, tmp_path: Path
) -> None:
    start_worker(WAITS_WORKER)
    gate = tmp_path / "gate"
    topic = "warehouse.pickup/gated"
    await client.events.publish(topic, {"n": 0})  # long before the execution starts

    handle = await client.invoke("gated_event_waiter", {"gate": str(gate), "topic": topic})
    await status_of(client, handle.id, "running")
    early = await client.events.publish(topic, {"n": 1})  # the execution has not reached it
    gate.touch()
    await parked_at(client, handle.id, "ev", WaitKind.EVENT)
    late = await client.events.publish(topic, {"n": 2})

    assert (early.seq, late.seq) == (2, 3)
    assert await handle.result(timeout=20) == {"seq": 3, "data": {"n": 2}, "topic": topic}
    ev = next(s for s in await client.list_steps(handle.id) if s.key == "ev")
    assert ev.kind == "wait_event"
    assert ev.output["id"] == late.id


async def test_wait_for_event__timeout_then_later_events_change_nothing(
    client: PolosClient, start_worker
) -> None:
    start_worker(WAITS_WORKER)
    handle = await client.invoke("event_waiter", {"topic": "never/comes", "timeout": 0.5})
    wait = await parked_at(client, handle.id, "ev", WaitKind.EVENT)
    assert wait.topic == "never/comes"
    assert wait.expires_at is not None

    assert await handle.result(timeout=20) == {"outcome": "timed_out"}
    [step] = await client.list_steps(handle.id)
    assert step.error is not None
    assert step.error.type == "polos.WaitTimeoutError"
    assert "never/comes" in step.error.message

    await client.events.publish("never/comes", {"too": "late"})
    execution = await client.get_execution(handle.id)
    assert execution.status == COMPLETED
    assert execution.result == {"outcome": "timed_out"}
    assert await waits_of(client, handle.id) == []


async def test_wait_for_event__one_event_ends_every_wait_on_its_topic_only(
    client: PolosClient, start_worker
) -> None:
    start_worker(WAITS_WORKER)
    handles = await client.invoke_many("event_waiter", [{"topic": "shared/t"}] * 10)
    other = await client.invoke("event_waiter", {"topic": "shared/other"})
    for handle in [*handles, other]:
        await status_of(client, handle.id, "waiting")

    published = await client.events.publish("shared/t", {"all": True})

    results = await client.wait_many([h.id for h in handles], timeout=20)
    assert [e.result for e in results] == [
        {"outcome": "event", "seq": published.seq, "data": {"all": True}}
    ] * 10
    assert (await client.get_execution(other.id)).status == WAITING
    assert [w.topic for w in await waits_of(client, other.id)] == ["shared/other"]
    await client.cancel(other.id)


async def test_events_publish__idempotency_key_and_gap_free_order(client: PolosClient) -> None:
    first = await client.events.publish("ledger", {"n": 1})
    keyed = await client.events.publish("ledger", {"n": 2}, idempotency_key="k-2")
    await client.events.publish("ledger/other", {"n": "x"})
    third = await client.events.publish("ledger", {"n": 3})
    again = await client.events.publish("ledger", {"n": "ignored"}, idempotency_key="k-2")

    assert (first.seq, keyed.seq, third.seq) == (1, 2, 3)
    assert keyed.created and first.created and third.created
    assert not again.created
    assert (again.seq, again.id, again.data) == (keyed.seq, keyed.id, {"n": 2})
    assert again.idempotency_key == "k-2"

    page = await client.events.list("ledger")
    assert [e.seq for e in page.items] == [1, 2, 3]
    assert [e.data for e in page.items] == [{"n": 1}, {"n": 2}, {"n": 3}]
    assert page.next_after is None
    assert [e.seq for e in (await client.events.list("ledger/other")).items] == [1]
    part = await client.events.list("ledger", after=1, limit=1)
    assert [e.seq for e in part.items] == [2]
    assert part.next_after == 2
    assert [e.seq for e in (await client.events.list("ledger", after=2)).items] == [3]


async def test_publish_event__from_a_workflow_is_logged_once_with_its_source(
    client: PolosClient, start_worker
) -> None:
    start_worker(WAITS_WORKER)
    await client.events.publish("wf/out", {"before": True})

    handle = await client.invoke("publisher", {"topic": "wf/out"})
    result = await handle.result(timeout=20)

    events = (await client.events.list("wf/out")).items
    assert [e.seq for e in events] == [1, 2]
    published = events[1]
    assert result == {"seq": 2}
    assert published.source_execution_id == handle.id
    assert published.idempotency_key == f"{handle.id}:pub"
    assert published.data == {"from": handle.id}
    assert events[0].source_execution_id is None


async def test_publish_event__a_replay_does_not_publish_again(
    client: PolosClient, start_worker
) -> None:
    start_worker(WAITS_WORKER)
    handle = await client.invoke("publish_across_replay", {"topic": "replayed/out"})
    await parked_at(client, handle.id, "go", WaitKind.SUSPEND)
    assert [e.seq for e in (await client.events.list("replayed/out")).items] == [1]

    await client.resume(handle.id, "go")  # the next attempt replays the first publish step
    result = await handle.result(timeout=20)

    events = (await client.events.list("replayed/out")).items
    assert [(e.seq, e.data, e.idempotency_key) for e in events] == [
        (1, {"n": 1}, f"{handle.id}:pub"),
        (2, {"n": 2}, f"{handle.id}:pub#2"),
    ]
    assert all(e.source_execution_id == handle.id for e in events)
    for returned, event in zip((result["first"], result["second"]), events, strict=True):
        # The first was returned by a replay (from the step log), the second by a publish.
        assert returned == {
            "id": event.id,
            "topic": "replayed/out",
            "seq": event.seq,
            "data": event.data,
            "created_at": event.created_at,
        }
    assert (await client.get_execution(handle.id)).attempt == 2


async def test_events_stream__live_events_and_resume_from_after(client: PolosClient) -> None:
    await client.events.publish("live/t", {"n": 1})

    stream = client.events.stream("live/t", after=0)
    try:
        [logged] = await take(stream, 1)  # connected: everything from here on is live
        assert (logged.seq, logged.data) == (1, {"n": 1})
        for n in (2, 3, 4):
            await client.events.publish("live/t", {"n": n})
        live = await take(stream, 3)
    finally:
        await stream.aclose()
    assert [(e.seq, e.data) for e in live] == [(2, {"n": 2}), (3, {"n": 3}), (4, {"n": 4})]

    await client.events.publish("live/t", {"n": 5})
    resumed = client.events.stream("live/t", after=3)
    try:
        caught_up = await take(resumed, 2)
        await client.events.publish("live/t", {"n": 6})
        [newest] = await take(resumed, 1)
    finally:
        await resumed.aclose()
    assert [e.seq for e in caught_up] == [4, 5]
    assert (newest.seq, newest.data) == (6, {"n": 6})


async def test_events_stream__catches_up_a_long_log_page_by_page(client: PolosClient) -> None:
    await client.events.publish_many([("long/t", {"n": n}) for n in range(1, 601)])

    stream = client.events.stream("long/t", after=0)
    try:
        logged = await take(stream, 600, timeout=30)  # more than one page of the server
        await client.events.publish("long/t", {"n": 601})
        [live] = await take(stream, 1)
    finally:
        await stream.aclose()

    assert [e.seq for e in logged] == list(range(1, 601))
    assert [e.data for e in logged] == [{"n": n} for n in range(1, 601)]
    assert (live.seq, live.data) == (601, {"n": 601})
    first = await client.events.list("long/t", limit=500)
    rest = await client.events.list("long/t", after=first.next_after or 0, limit=500)
    assert first.next_after == 500
    assert [e.seq for e in first.items + rest.items] == list(range(1, 602))
    assert rest.next_after is None


async def test_events_stream__sees_events_published_by_workflows(
    client: PolosClient, start_worker
) -> None:
    start_worker(WAITS_WORKER)
    await client.events.publish("wf/stream", {"marker": True})
    stream = client.events.stream("wf/stream", after=0)
    try:
        await take(stream, 1)
        handle = await client.invoke("publisher", {"topic": "wf/stream"})
        [event] = await take(stream, 1)
    finally:
        await stream.aclose()

    assert event.seq == 2
    assert event.source_execution_id == handle.id
    assert event.data == {"from": handle.id}
    assert await handle.result(timeout=20) == {"seq": 2}


async def test_events_publish__concurrent_publishes_with_one_key_create_one_event(
    client: PolosClient,
) -> None:
    answers = await asyncio.gather(
        *(client.events.publish("same/key", {"n": n}, idempotency_key="once") for n in range(10))
    )

    assert sum(a.created for a in answers) == 1
    assert {(a.seq, a.id) for a in answers} == {(1, answers[0].id)}
    [event] = (await client.events.list("same/key")).items
    assert event.idempotency_key == "once"
    assert event.data == next(a.data for a in answers if a.created)


async def test_publish_event__from_a_workflow_wakes_waiters_and_triggers(
    client: PolosClient, start_worker
) -> None:
    start_worker(WAITS_WORKER)
    waiter = await client.invoke("event_waiter", {"topic": "ping"})
    await parked_at(client, waiter.id, "ev", WaitKind.EVENT)

    publisher = await client.invoke("publisher", {"topic": "ping"})

    assert await publisher.result(timeout=20) == {"seq": 1}
    assert await waiter.result(timeout=20) == {
        "outcome": "event",
        "seq": 1,
        "data": {"from": publisher.id},
    }

    async def triggered() -> list[Execution]:
        return await executions_of(client, "on_ping")

    [started] = await eventually(triggered, "on_ping to be triggered by the workflow's event")
    assert await client.result(started.id, timeout=20) == {
        "seq": 1,
        "data": {"from": publisher.id},
    }


# ---------------------------------------------------------------------- races


async def test_race__event_published_as_soon_as_the_wait_exists_is_delivered(
    client: PolosClient, start_worker
) -> None:
    start_worker(WAITS_WORKER)
    topics = [f"race/poll/{i}" for i in range(20)]
    handles = await client.invoke_many("event_waiter", [{"topic": t} for t in topics])
    ids = [h.id for h in handles]

    published: dict[str, int] = {}

    async def publish_when_waiting() -> bool:
        page = await client.list_executions(workflow_id="event_waiter", status="waiting", limit=50)
        waiting = {e.id for e in page.items}
        for eid, topic in zip(ids, topics, strict=True):
            if eid in waiting and eid not in published:
                published[eid] = (await client.events.publish(topic, {"for": eid})).seq
        return len(published) == len(ids)

    await eventually(publish_when_waiting, "every waiter to wait", interval=0.005)
    results = await client.wait_many(ids, timeout=20)

    for execution in results:
        assert execution.status == COMPLETED
        assert execution.result == {"outcome": "event", "seq": 1, "data": {"for": execution.id}}


async def hammer_race(waiters: PolosClient, publishers: PolosClient, prefix: str) -> None:
    """Publishers hammer each topic before, during and after its wait is registered.

    ``waiters`` starts the ``event_waiter`` executions and watches them; ``publishers``
    publishes (the same orchestrator, or another one on the same database). Each
    waiter must complete, with the first event published after its wait was
    registered: an event published in the very instant the wait is registered is
    either before it or delivered, never lost in between.
    """
    topics = [f"{prefix}/{i}" for i in range(20)]
    ids: dict[str, str] = {}
    warmed_up = asyncio.Event()
    started: set[str] = set()

    async def hammer(topic: str) -> tuple[list[tuple[int, float, float]], float | None]:
        """Publish in a tight loop until the topic's execution finishes.

        Returns (seq, request start, response end) per publish, and a moment after
        which the execution was seen waiting (None if never seen so).
        """
        publishes: list[tuple[int, float, float]] = []
        seen_waiting: float | None = None
        for i in range(5000):
            start = time.time()
            event = await publishers.events.publish(topic, {"i": i})
            publishes.append((event.seq, start, time.time()))
            if len(publishes) == 3:
                started.add(topic)
                if len(started) == len(topics):
                    warmed_up.set()
            eid = ids.get(topic)
            if eid is None:
                continue
            execution = await waiters.get_execution(eid)
            if execution.status == WAITING and seen_waiting is None:
                seen_waiting = time.time()
            if execution.status.is_terminal:
                return publishes, seen_waiting
        pytest.fail(f"the waiter on {topic} received none of {len(publishes)} events")

    hammers = asyncio.gather(*(hammer(t) for t in topics))
    await asyncio.wait_for(warmed_up.wait(), 20)
    # Every event so far was published before the executions existed.
    before_invoke = {t: (await waiters.events.list(t, limit=1000)).items[-1].seq for t in topics}
    handles = await waiters.invoke_many("event_waiter", [{"topic": t} for t in topics])
    ids.update({t: h.id for t, h in zip(topics, handles, strict=True)})
    outcomes = await asyncio.wait_for(hammers, 40)

    for topic, handle, (publishes, seen_waiting) in zip(topics, handles, outcomes, strict=True):
        execution = await waiters.get_execution(handle.id)
        assert execution.status == COMPLETED, execution
        seq = execution.result["seq"]
        assert [s for s, _, _ in publishes] == list(range(1, len(publishes) + 1))
        assert execution.result == {"outcome": "event", "seq": seq, "data": {"i": seq - 1}}
        assert seq > before_invoke[topic]
        ev = next(s for s in await waiters.list_steps(handle.id) if s.key == "ev")
        assert ev.started_at is not None
        # Committed before the worker even reached the step: not delivered.
        before = [s for s, _, end in publishes if end * 1000 < ev.started_at]
        assert all(s < seq for s in before), (seq, before)
        # Published after the wait was seen registered: the first of those (or an earlier
        # one) must be the event delivered; a later one would mean an event was lost.
        if seen_waiting is not None:
            after = [s for s, start, _ in publishes if start > seen_waiting]
            assert not after or seq <= min(after), (seq, after)


async def test_race__event_published_while_the_wait_registers_is_never_lost(
    client: PolosClient, start_worker
) -> None:
    start_worker(WAITS_WORKER)

    await hammer_race(client, client, "race/hammer")


async def test_race__across_orchestrators_an_event_is_never_lost(
    make_server, start_worker, store_kind: str
) -> None:
    if store_kind == "sqlite":
        pytest.skip("SQLite serves one orchestrator (docs/deployment.md)")
    first, second = make_server(), make_server()  # one PostgreSQL database
    start_worker(WAITS_WORKER, api_url=first.url)
    async with PolosClient(first.url) as waiters, PolosClient(second.url) as publishers:
        await hammer_race(waiters, publishers, "race/across")


# ---------------------------------------------------------------------- triggers


async def test_trigger__one_execution_per_event_published_after_registration(
    client: PolosClient, start_worker, side_log: Path
) -> None:
    before = [await client.events.publish("ping", {"n": n}) for n in (1, 2)]
    assert [p.triggered for p in before] == [[], []]  # no worker ever registered on_ping

    start_worker(WAITS_WORKER)
    after = [await client.events.publish("ping", {"n": n}) for n in (3, 4, 5)]

    assert [p.seq for p in after] == [3, 4, 5]
    assert all(len(p.triggered) == 1 for p in after)
    triggered = [p.triggered[0] for p in after]
    results = await client.wait_many(triggered, timeout=20)
    assert [e.result for e in results] == [
        {"seq": p.seq, "data": {"n": n}} for p, n in zip(after, (3, 4, 5), strict=True)
    ]
    for execution, event in zip(results, after, strict=True):
        assert execution.workflow_id == "on_ping"
        assert execution.payload == {"n": event.seq}
        assert execution.trigger_event == {
            "id": event.id,
            "topic": "ping",
            "seq": event.seq,
            "created_at": event.created_at,
        }
        assert execution.idempotency_key == f"trigger:on_ping:ping:{event.seq}"
    assert sorted(e.id for e in await executions_of(client, "on_ping")) == sorted(triggered)

    # A second worker registering the same workflow neither replays the topic nor doubles up.
    start_worker(WAITS_WORKER, name="second")
    extra = await client.events.publish("ping", {"n": 6})
    assert len(extra.triggered) == 1
    await client.wait_many(extra.triggered, timeout=20)
    assert len(await executions_of(client, "on_ping")) == 4
    assert sorted(line.split()[1] for line in side_lines(side_log)) == ["3", "4", "5", "6"]


async def test_trigger__batch_starts_one_execution_with_all_its_events(
    client: PolosClient, start_worker
) -> None:
    start_worker(WAITS_WORKER)

    published = await client.events.publish_many([("bulk", {"k": n}) for n in (1, 2, 3)])

    started = [eid for p in published for eid in p.triggered]
    assert len(started) == 1
    assert published[2].triggered == started  # the third event filled the batch
    assert await client.result(started[0], timeout=20) == 3
    execution = await client.get_execution(started[0])
    assert execution.payload == [{"k": 1}, {"k": 2}, {"k": 3}]
    assert [e["seq"] for e in execution.trigger_event] == [1, 2, 3]
    assert [e["topic"] for e in execution.trigger_event] == ["bulk"] * 3

    lone = await client.events.publish("bulk", {"k": 4})
    assert lone.triggered == []  # waits for the batch timeout (1 s)

    async def second_batch() -> list[Execution]:
        found = await executions_of(client, "on_bulk")
        return found if len(found) == 2 else []

    executions = await eventually(second_batch, "the batch timeout to start on_bulk")
    late = executions[1]
    assert await client.result(late.id, timeout=20) == 1
    late = await client.get_execution(late.id)
    assert late.payload == [{"k": 4}]
    assert [e["seq"] for e in late.trigger_event] == [4]
    assert len(await executions_of(client, "on_bulk")) == 2


async def test_trigger__event_data_not_matching_the_payload_model_fails_without_retry(
    client: PolosClient, start_worker, side_log: Path
) -> None:
    start_worker(WAITS_WORKER)

    published = await client.events.publish("order/new", {"id": "bad", "amount": "lots"})

    [eid] = published.triggered
    with pytest.raises(WorkflowFailedError) as failed:
        await client.result(eid, timeout=20)
    assert failed.value.error_type == "polos.errors.PayloadValidationError"
    assert "amount" in failed.value.error_message
    execution = await client.get_execution(eid)
    assert execution.workflow_id == "process_order"
    assert execution.attempt == 1
    assert await client.list_steps(eid) == []
    assert side_lines(side_log) == []


async def test_trigger__events_published_while_no_worker_is_up_still_start_executions(
    client: PolosClient, start_worker
) -> None:
    worker = start_worker(WAITS_WORKER)
    worker.stop(timeout=10)  # on_ping is registered; no worker runs it now

    published = await client.events.publish("ping", {"n": 1})
    again = await client.events.publish("ping", {"n": 1}, idempotency_key="p-1")
    repeat = await client.events.publish("ping", {"n": 1}, idempotency_key="p-1")

    assert len(published.triggered) == len(again.triggered) == 1
    assert repeat.triggered == [] and not repeat.created
    for eid in [*published.triggered, *again.triggered]:
        assert (await client.get_execution(eid)).status == ExecutionStatus.QUEUED
    start_worker(WAITS_WORKER, name="later")
    done = await client.wait_many([*published.triggered, *again.triggered], timeout=20)
    assert [e.result for e in done] == [
        {"seq": 1, "data": {"n": 1}},
        {"seq": 2, "data": {"n": 1}},
    ]
    assert len(await executions_of(client, "on_ping")) == 2


async def test_trigger__batches_fill_in_order_and_the_rest_waits_for_the_timeout(
    client: PolosClient, start_worker
) -> None:
    start_worker(WAITS_WORKER)

    published = [await client.events.publish("bulk", {"k": n}) for n in range(1, 8)]

    assert [len(p.triggered) for p in published] == [0, 0, 1, 0, 0, 1, 0]

    async def three() -> list[Execution]:
        found = await executions_of(client, "on_bulk")
        return found if len(found) == 3 else []

    executions = await eventually(three, "three on_bulk executions")
    done = await client.wait_many([e.id for e in executions], timeout=20)
    assert [(e.payload, e.result) for e in done] == [
        ([{"k": 1}, {"k": 2}, {"k": 3}], 3),
        ([{"k": 4}, {"k": 5}, {"k": 6}], 3),
        ([{"k": 7}], 1),
    ]


async def test_trigger__batch_event_payload_gets_the_events_with_metadata(
    client: PolosClient, start_worker
) -> None:
    start_worker(WAITS_WORKER)

    pair = await client.events.publish_many([("bulk/meta", "a"), ("bulk/meta", {"b": 2})])
    [eid] = pair[1].triggered
    assert await client.result(eid, timeout=20) == [
        ["bulk/meta", 1, "a"],
        ["bulk/meta", 2, {"b": 2}],
    ]

    await client.events.publish("bulk/meta", None)

    async def second() -> list[Execution]:
        found = await executions_of(client, "on_bulk_events")
        return found if len(found) == 2 else []

    late = (await eventually(second, "the batch timeout to start on_bulk_events"))[1]
    assert await client.result(late.id, timeout=20) == [["bulk/meta", 3, None]]


async def test_several_orchestrators__triggers_resumes_events_and_streams_cross_over(
    make_server, start_worker, store_kind: str
) -> None:
    if store_kind == "sqlite":
        pytest.skip("SQLite serves one orchestrator (docs/deployment.md)")
    first, second = make_server(), make_server()  # one PostgreSQL database
    start_worker(WAITS_WORKER, api_url=first.url)  # connected to the first only
    async with PolosClient(first.url) as one, PolosClient(second.url) as two:
        answers = await asyncio.gather(
            *((one if n % 2 else two).events.publish("ping", {"n": n}) for n in range(30))
        )
        assert sorted(a.seq for a in answers) == list(range(1, 31))
        started = [eid for a in answers for eid in a.triggered]
        assert len(started) == len(set(started)) == 30
        done = await one.wait_many(started, timeout=30)
        assert all(e.status == COMPLETED for e in done)
        assert sorted(e.result["seq"] for e in done) == list(range(1, 31))
        assert len(await executions_of(one, "on_ping")) == 30

        # A resume and an event sent to the other orchestrator reach the worker.
        approval = await one.invoke("approve", {})
        waiter = await one.invoke("event_waiter", {"topic": "across/ev"})
        await parked_at(one, approval.id, "approval")
        await parked_at(one, waiter.id, "ev")
        await two.resume(approval.id, "approval", {"via": "second"})
        await two.events.publish("across/ev", {"via": "second"})
        assert await one.result(approval.id, timeout=20) == {
            "outcome": "resumed",
            "data": {"via": "second"},
        }
        assert await one.result(waiter.id, timeout=20) == {
            "outcome": "event",
            "seq": 1,
            "data": {"via": "second"},
        }
        with pytest.raises(NotWaitingError):
            await one.resume(approval.id, "approval", {"via": "first"})

        # A stream on one orchestrator sees what a workflow publishes through the other.
        await two.events.publish("across/stream", {"n": 0})
        stream = two.events.stream("across/stream", after=0)
        try:
            await take(stream, 1)
            publisher = await one.invoke("publisher", {"topic": "across/stream"})
            [event] = await take(stream, 1)
        finally:
            await stream.aclose()
        assert (event.seq, event.source_execution_id) == (2, publisher.id)


# ---------------------------------------------------------------------- child workflows


async def test_children__fan_out_keeps_input_order_and_replay_starts_no_duplicates(
    client: PolosClient, start_worker
) -> None:
    start_worker(WAITS_WORKER)
    numbers = [3, 1, 2, 5]

    handle = await client.invoke("fan_out", numbers)
    result = await handle.result(timeout=30)

    assert result == {"results": [6, 2, 4, 10], "single": 42}
    children = await executions_of(client, "double")
    assert len(children) == len(numbers) + 1  # the parent was replayed twice
    expected_ids = [child_execution_id(handle.id, "doubles", i) for i in range(len(numbers))]
    expected_ids.append(child_execution_id(handle.id, "one", 0))
    assert sorted(c.id for c in children) == sorted(expected_ids)
    by_id = {c.id: c for c in children}
    for i, n in enumerate(numbers):
        child = by_id[expected_ids[i]]
        assert (child.parent_id, child.root_id, child.parent_step_key) == (
            handle.id,
            handle.id,
            "doubles",
        )
        assert child.payload == n
        assert (child.status, child.result) == (COMPLETED, n * 2)
    single = by_id[expected_ids[-1]]
    assert (single.parent_id, single.root_id, single.parent_step_key) == (
        handle.id,
        handle.id,
        "one",
    )
    parent = await client.get_execution(handle.id)
    assert parent.parent_id is None
    assert parent.root_id in (None, handle.id)
    steps = await client.list_steps(handle.id)
    assert [(s.key, s.kind) for s in steps] == [("doubles", "invoke_wait"), ("one", "invoke_wait")]

    nothing = await client.invoke("fan_out", [])
    assert await nothing.result(timeout=20) == {"results": [], "single": None}
    assert len(await executions_of(client, "double")) == len(numbers) + 1


async def test_children__a_failing_child_is_reported_while_the_others_succeed(
    client: PolosClient, start_worker
) -> None:
    start_worker(WAITS_WORKER)

    result = await (await client.invoke("fan_out", [1, -2, 3])).result(timeout=30)

    assert result == {"results": [2, "error: negative: -2", 6], "single": 42}
    children = {c.payload: c for c in await executions_of(client, "double")}
    failed = children[-2]
    assert failed.status == ExecutionStatus.FAILED
    assert failed.error is not None
    assert "ValueError" in failed.error.type
    assert children[1].status == children[3].status == COMPLETED


async def test_invoke_and_wait__returns_the_childs_typed_result(
    client: PolosClient, start_worker
) -> None:
    start_worker(WAITS_WORKER)

    typed = await client.invoke(
        "call_child", {"workflow": "make_payment", "payload": {"id": "o-9", "amount": 1}}
    )
    number = await client.invoke("call_child", {"workflow": "double", "payload": 21})

    assert await typed.result(timeout=20) == {"type": "Payment", "result": {"id": "pay_o-9"}}
    assert await number.result(timeout=20) == {"type": "int", "result": 42}
    child = await client.get_execution(child_execution_id(typed.id, "child", 0))
    assert (child.workflow_id, child.parent_id, child.parent_step_key) == (
        "make_payment",
        typed.id,
        "child",
    )


async def test_invoke_and_wait__failed_child_raises_child_workflow_error(
    client: PolosClient, start_worker
) -> None:
    start_worker(WAITS_WORKER)

    caught = await client.invoke("call_child", {"workflow": "double", "payload": -5})
    uncaught = await client.invoke(
        "call_child", {"workflow": "double", "payload": -6, "catch": False}
    )

    result = await caught.result(timeout=20)
    assert result["raised"] == "ChildWorkflowError"
    assert result["child"] == child_execution_id(caught.id, "child", 0)
    assert result["workflow_id"] == "double"
    assert result["status"] == "failed"
    assert "ValueError" in result["error_type"]
    assert result["error_message"] == "negative: -5"
    with pytest.raises(WorkflowFailedError) as failed:
        await uncaught.result(timeout=20)
    assert failed.value.error_type.endswith("ChildWorkflowError")
    assert "negative: -6" in failed.value.error_message


async def test_invoke_and_wait__cancelled_child_raises_child_workflow_error(
    client: PolosClient, start_worker
) -> None:
    start_worker(WAITS_WORKER)
    parent = await client.invoke(
        "call_child", {"workflow": "sleeper", "payload": {"seconds": 3600}}
    )
    child_id = child_execution_id(parent.id, "child", 0)
    wait = await parked_at(client, parent.id, "child", WaitKind.CHILD)
    assert wait.pending_children == 1
    await parked_at(client, child_id, "nap", WaitKind.SLEEP)

    await client.cancel(child_id, reason="no longer needed")

    result = await parent.result(timeout=20)
    assert result["raised"] == "ChildWorkflowError"
    assert (result["child"], result["status"]) == (child_id, "cancelled")
    assert result["error_type"] == "polos.ExecutionCancelled"
    assert result["error_message"].startswith("cancelled"), result
    assert (await client.get_execution(child_id)).status == CANCELLED
    assert (await client.list_waits()).items == []


async def test_children__grandchildren_carry_the_root_id(client: PolosClient, start_worker) -> None:
    start_worker(WAITS_WORKER)

    top = await client.invoke("grandparent", [1, 2])
    assert await top.result(timeout=30) == {"results": [2, 4], "single": 42}

    middle_id = child_execution_id(top.id, "middle", 0)
    middle = await client.get_execution(middle_id)
    assert (middle.workflow_id, middle.parent_id, middle.root_id) == ("fan_out", top.id, top.id)
    for child in await executions_of(client, "double"):
        assert (child.parent_id, child.root_id) == (middle_id, top.id)


async def test_cancel__parent_cancels_all_its_children(client: PolosClient, start_worker) -> None:
    start_worker(WAITS_WORKER)
    parent = await client.invoke("parent_of_sleepers", 3)
    wait = await parked_at(client, parent.id, "kids", WaitKind.CHILD)
    assert wait.pending_children == 3
    kids = [child_execution_id(parent.id, "kids", i) for i in range(3)]
    for kid in kids:
        await parked_at(client, kid, "nap", WaitKind.SLEEP)

    cancelled = await client.cancel(parent.id, reason="enough")

    assert cancelled.status == CANCELLED
    for kid in kids:
        await status_of(client, kid, "cancelled")
    assert (await client.list_waits()).items == []
    assert (await client.get_execution(parent.id)).status == CANCELLED


async def test_cancel__grandparent_cancels_the_whole_tree(
    client: PolosClient, start_worker
) -> None:
    start_worker(WAITS_WORKER)
    top = await client.invoke("grandparent_of_sleepers", 2)
    middle = child_execution_id(top.id, "middle", 0)
    kids = [child_execution_id(middle, "kids", i) for i in range(2)]
    await parked_at(client, top.id, "middle", WaitKind.CHILD)
    await parked_at(client, middle, "kids", WaitKind.CHILD)
    for kid in kids:
        await parked_at(client, kid, "nap", WaitKind.SLEEP)

    await client.cancel(top.id)

    for eid in (top.id, middle, *kids):
        await status_of(client, eid, "cancelled")
    assert (await client.list_waits()).items == []
    for kid in kids:
        assert (await client.get_execution(kid)).root_id == top.id


async def test_invoke__unregistered_child_raises_workflow_not_found_inside_the_workflow(
    client: PolosClient, start_worker
) -> None:
    start_worker(WAITS_WORKER)

    waited = await client.invoke("call_child", {"workflow": "no_such_workflow"})
    fired = await client.invoke("call_child", {"workflow": "no_such_workflow", "mode": "invoke"})

    for handle in (waited, fired):
        result = await handle.result(timeout=20)
        assert result["raised"] == "WorkflowNotFoundError"
        assert "no_such_workflow" in result["message"]
    listed = await client.list_executions(limit=500)
    assert {e.workflow_id for e in listed.items} == {"call_child"}


async def test_invoke__fire_and_forget_child_runs_on_its_own(
    client: PolosClient, start_worker
) -> None:
    start_worker(WAITS_WORKER)

    parent = await client.invoke(
        "call_child", {"workflow": "double", "payload": 4, "mode": "invoke"}
    )
    result = await parent.result(timeout=20)

    handle = result["handle"]
    assert handle["id"] == child_execution_id(parent.id, "child", 0)
    assert (handle["workflow_id"], handle["parent_execution_id"], handle["step_key"]) == (
        "double",
        parent.id,
        "child",
    )
    assert await client.result(handle["id"], timeout=20) == 8
    child = await client.get_execution(handle["id"])
    assert (child.parent_id, child.root_id, child.parent_step_key) == (
        parent.id,
        parent.id,
        "child",
    )


async def test_children__cancelled_children_are_reported_to_a_batch_wait(
    client: PolosClient, start_worker
) -> None:
    start_worker(WAITS_WORKER)
    parent = await client.invoke("parent_of_sleepers", 2)
    kids = [child_execution_id(parent.id, "kids", i) for i in range(2)]
    for kid in kids:
        await parked_at(client, kid, "nap", WaitKind.SLEEP)

    await client.cancel(kids[0])
    wait = await parked_at(client, parent.id, "kids", WaitKind.CHILD)
    assert wait.pending_children == 1
    await client.cancel(kids[1])

    assert await parent.result(timeout=20) is None  # a batch wait does not raise
    [step] = await client.list_steps(parent.id)
    assert [(o["execution_id"], o["status"]) for o in step.output] == [
        (kids[0], "cancelled"),
        (kids[1], "cancelled"),
    ]
    assert all(o["error"]["type"] == "polos.ExecutionCancelled" for o in step.output)


async def test_children__a_batch_naming_an_unregistered_workflow_starts_none(
    client: PolosClient, start_worker
) -> None:
    start_worker(WAITS_WORKER)

    result = await (await client.invoke("mixed_batch", 4)).result(timeout=20)

    assert "no_such_workflow" in result["first"]
    assert result["second"] == [8]
    children = await executions_of(client, "double")
    assert [(c.parent_step_key, c.result) for c in children] == [("kids#2", 8)]


async def test_cancel__a_middle_execution_fails_its_parent_and_cancels_its_children(
    client: PolosClient, start_worker
) -> None:
    start_worker(WAITS_WORKER)
    top = await client.invoke("grandparent_of_sleepers", 2)
    middle = child_execution_id(top.id, "middle", 0)
    kids = [child_execution_id(middle, "kids", i) for i in range(2)]
    for kid in kids:
        await parked_at(client, kid, "nap", WaitKind.SLEEP)

    await client.cancel(middle, reason="not needed")

    with pytest.raises(WorkflowFailedError) as failed:
        await top.result(timeout=20)
    assert failed.value.error_type == "polos.errors.ChildWorkflowError"
    assert middle in failed.value.error_message
    assert "cancelled" in failed.value.error_message
    for kid in kids:
        await status_of(client, kid, "cancelled")
    assert (await client.list_waits()).items == []


# ---------------------------------------------------------------------- the README scenario


async def test_readme_process_order__big_order_is_approved_charged_once_and_shipped(
    client: PolosClient, start_worker, side_log: Path
) -> None:
    start_worker(WAITS_WORKER)

    order = {"id": "o-1", "amount": 5000, "items": ["lamp"]}
    published = await client.events.publish("order/new", order)
    [eid] = published.triggered

    approval = await parked_at(client, eid, "approval", WaitKind.SUSPEND)
    assert approval.workflow_id == "process_order"
    assert approval.data == order
    assert [w.execution_id for w in (await client.list_waits(kind="suspend")).items] == [eid]
    assert (await client.get_execution(eid)).worker_id is None
    assert count_lines(side_log, "charge") == 0

    await client.resume(eid, "approval", {"approved": True})
    pickup = await parked_at(client, eid, "wait_pickup", WaitKind.EVENT)
    assert pickup.topic == "warehouse.pickup/o-1"
    assert count_lines(side_log, "charge " + eid) == 1
    assert count_lines(side_log, "notify " + eid) == 0

    await client.events.publish("warehouse.pickup/o-1", {})
    assert await client.result(eid, timeout=20) == {
        "status": "completed",
        "payment_id": "pay_o-1",
        "reason": None,
    }
    assert count_lines(side_log, "charge " + eid) == 1  # the replays did not charge again
    assert count_lines(side_log, "notify " + eid) == 1
    steps = await client.list_steps(eid)
    assert [(s.key, s.kind) for s in steps] == [
        ("validate_order", "run"),
        ("approval", "suspend"),
        ("charge", "run"),
        ("wait_pickup", "wait_event"),
        ("notify", "run"),
    ]


async def test_readme_process_order__small_order_skips_approval(
    client: PolosClient, start_worker, side_log: Path
) -> None:
    start_worker(WAITS_WORKER)

    handle = await client.invoke("process_order", {"id": "o-2", "amount": 1000})
    await parked_at(client, handle.id, "wait_pickup", WaitKind.EVENT)
    assert (await client.list_waits(kind="suspend")).items == []
    await client.events.publish("warehouse.pickup/o-2", {"dock": 4})

    typed = app.ProcessOrderOutput.model_validate(await handle.result(timeout=20))
    assert typed == app.ProcessOrderOutput(status="completed", payment_id="pay_o-2")
    assert [s.key for s in await client.list_steps(handle.id)] == [
        "validate_order",
        "charge",
        "wait_pickup",
        "notify",
    ]
    assert count_lines(side_log, "charge " + handle.id) == 1
    assert count_lines(side_log, "notify " + handle.id) == 1


async def test_readme_process_order__rejected_order_is_never_charged(
    client: PolosClient, start_worker, side_log: Path
) -> None:
    start_worker(WAITS_WORKER)

    handle = await client.invoke("process_order", {"id": "o-3", "amount": 2500})
    await parked_at(client, handle.id, "approval", WaitKind.SUSPEND)
    await client.resume(handle.id, "approval", {"approved": False})

    assert await handle.result(timeout=20) == {
        "status": "rejected",
        "payment_id": None,
        "reason": None,
    }
    assert [s.key for s in await client.list_steps(handle.id)] == ["validate_order", "approval"]
    assert side_lines(side_log) == []
    assert (await client.list_waits()).items == []


# ---------------------------------------------------------------------- bad values
# PostgreSQL refuses NUL characters in text; that used to be answered 503 (a database
# outage, retried by clients) instead of 422. SQLite stores them.


def _not_a_database_outage(exc: ApiError | None) -> None:
    """The request was answered (accepted, or refused as invalid), not reported as an outage."""
    if exc is not None:
        assert exc.status_code == 422, f"{exc.status_code} {exc.code}: {exc.message}"


async def test_nul__in_an_idempotency_key_is_not_a_database_outage(
    server: ServerProcess, store_kind: str
) -> None:
    async with PolosClient(server.url, retry_for=0.3) as client:
        refused: ApiError | None = None
        try:
            await client.events.publish("nul/key", {"n": 1}, idempotency_key="k\x00")
        except ApiError as exc:
            refused = exc
    _not_a_database_outage(refused)


async def test_nul__in_a_list_waits_filter_is_not_a_database_outage(
    server: ServerProcess, store_kind: str
) -> None:
    async with PolosClient(server.url, retry_for=0.3) as client:
        refused: ApiError | None = None
        try:
            page = await client.list_waits(workflow_id="approve\x00")
            assert page.items == []
        except ApiError as exc:
            refused = exc
    _not_a_database_outage(refused)


async def test_nul__in_a_resume_step_key_is_not_a_database_outage(
    server: ServerProcess, start_worker, store_kind: str
) -> None:
    start_worker(WAITS_WORKER)
    async with PolosClient(server.url, retry_for=0.3) as client:
        finished = await client.invoke("double", 2)
        assert await finished.result(timeout=20) == 4
        with pytest.raises(ApiError) as refused:
            await client.resume(finished.id, "approval\x00", {"approved": True})
    assert isinstance(refused.value, NotWaitingError) or refused.value.status_code == 422, (
        f"{refused.value.status_code} {refused.value.code}: {refused.value.message}"
    )
