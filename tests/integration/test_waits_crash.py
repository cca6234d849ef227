"""Waits under crashes and replicas: kill -9 workers and orchestrators while executions wait.

Real processes only: an orchestrator (``polos-server start``, SQLite and PostgreSQL),
the worker script ``workers/waits_crash_worker.py`` and the real ``PolosClient``.
The side log (steps append ``<what> <execution id> <pid>``) is the ground truth of
which step functions really ran, and in which worker process.

The claims under test (design guide, section 2):

- a waiting execution holds no worker: killing a worker while executions wait loses
  nothing and counts as no crash for them;
- the orchestrator ends a wait (resume, event, timer, children, timeout) in one
  transaction, from the database, so waits survive orchestrator restarts and a timer
  that fell due while no orchestrator ran fires once afterwards;
- a wait ends once: resumes racing the timeout (on two orchestrators too), children
  finishing on two orchestrators, parks re-sent after an orchestrator's kill -9;
- several orchestrators on one PostgreSQL never fire a timer (sleep, trigger batch) twice
  and never start two executions for one event;
- an event published while a wait registers is not lost;
- a short (in-worker) sleep goes on, not over, after a kill -9;
- 10,000 suspended executions cost the worker (almost) no memory.

Timings are printed (``-s``), never asserted.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest

from polos import (
    Execution,
    ExecutionStatus,
    NotWaitingError,
    PolosClient,
    StepRecord,
    WaitInfo,
    WaitKind,
)
from polos.testing._processes import ServerProcess
from tests.integration.conftest import Servers, Workers, side_lines

pytestmark = pytest.mark.timeout(90)

WORKER = Path(__file__).parent / "workers" / "waits_crash_worker.py"

WAITING = ExecutionStatus.WAITING
QUEUED = ExecutionStatus.QUEUED
RUNNING = ExecutionStatus.RUNNING
COMPLETED = ExecutionStatus.COMPLETED

T = TypeVar("T")


# ---------------------------------------------------------------------- helpers


async def eventually(
    probe: Callable[[], Awaitable[T | None]],
    what: str,
    timeout: float = 30.0,
    interval: float = 0.05,
) -> T:
    """Await ``probe()`` until it returns something truthy; return it (fails after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(interval)


async def all_waits(
    client: PolosClient, kind: WaitKind | str | None = None, *, limit: int = 500
) -> list[WaitInfo]:
    """Every wait (of ``kind``), oldest first, read page by page."""
    items: list[WaitInfo] = []
    cursor: str | None = None
    while True:
        page = await client.list_waits(kind, limit=limit, cursor=cursor)
        items += page.items
        if page.next_cursor is None:
            return items
        cursor = page.next_cursor


async def wait_at(
    client: PolosClient, execution_id: str, step_key: str, timeout: float = 30.0
) -> WaitInfo:
    """The wait of ``execution_id`` at ``step_key``, once the orchestrator has recorded it."""

    async def probe() -> WaitInfo | None:
        for w in await all_waits(client):
            if w.execution_id == execution_id and w.step_key == step_key:
                return w
        return None

    return await eventually(probe, f"{execution_id} to wait at {step_key!r}", timeout)


async def all_executions(client: PolosClient, workflow_id: str) -> list[Execution]:
    """Every execution of ``workflow_id``, read page by page."""
    items: list[Execution] = []
    cursor: str | None = None
    while True:
        page = await client.list_executions(workflow_id=workflow_id, limit=500, cursor=cursor)
        items += page.items
        if page.next_cursor is None:
            return items
        cursor = page.next_cursor


def side(path: Path, what: str) -> list[tuple[str, int]]:
    """``(execution id, pid)`` of the side-log lines ``<what> <execution id> <pid>``."""
    found = []
    for line in side_lines(path):
        parts = line.split()
        if parts[0] == what:
            found.append((parts[1], int(parts[2])))
    return found


def rss_kb(pid: int) -> int:
    """Resident set size of a process (``VmRSS`` in ``/proc/<pid>/status``), in kB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def chunks(items: Sequence[T], size: int) -> list[Sequence[T]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


# ---------------------------------------------------------------------- 1. the README scenario


@pytest.mark.chaos
async def test_readme_order__worker_killed_at_each_wait__charged_once_notified_once(
    client: PolosClient, start_worker: Workers, side_log: Path
) -> None:
    worker_a = start_worker(WORKER, name="a")
    order = {"id": "ord-42", "amount": 5000, "items": ["gpu"]}
    handle = await client.invoke("process_order", order)

    approval = await wait_at(client, handle.id, "approval")
    assert approval.kind == WaitKind.SUSPEND
    assert approval.data == {"id": "ord-42", "amount": 5000, "items": ["gpu"]}
    worker_a.kill()
    # The dead worker held nothing: the execution still waits, no attempt crashed.
    parked = await client.get_execution(handle.id)
    assert parked.status == WAITING
    assert parked.crashed_attempts == 0

    resumed = await client.resume(handle.id, "approval", {"approved": True})
    assert resumed.status == QUEUED  # no worker is connected: queued until one is
    worker_b = start_worker(WORKER, name="b")
    pickup = await wait_at(client, handle.id, "wait_pickup")
    assert pickup.kind == WaitKind.EVENT
    assert pickup.topic == "warehouse.pickup/ord-42"
    assert side(side_log, "charge") == [(handle.id, worker_b.pid)]
    worker_b.kill()

    worker_c = start_worker(WORKER, name="c")
    await client.events.publish("warehouse.pickup/ord-42", {"dock": 7})
    result = await handle.result(timeout=30)

    assert result["status"] == "completed"
    assert result["payment_id"] == "pay_ord-42"
    assert side(side_log, "charge") == [(handle.id, worker_b.pid)]
    assert side(side_log, "notify") == [(handle.id, worker_c.pid)]
    execution = await client.get_execution(handle.id)
    assert execution.status == COMPLETED
    assert execution.crashed_attempts == 0
    assert execution.failed_attempts == 0
    assert execution.attempts == []
    assert execution.attempt == 3  # parked on A, parked on B, finished on C
    steps = {s.key: s for s in await client.list_steps(handle.id)}
    assert set(steps) == {"validate_order", "approval", "charge", "wait_pickup", "notify"}
    assert steps["charge"].output == {"id": "pay_ord-42"}
    assert steps["approval"].output["data"] == {"approved": True}
    assert steps["wait_pickup"].output["data"] == {"dock": 7}


@pytest.mark.chaos
async def test_order__worker_killed_after_charge_was_recorded_before_the_wait__no_second_charge(
    client: PolosClient, start_worker: Workers, side_log: Path, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    worker_a = start_worker(WORKER, name="a")
    handle = await client.invoke("paused_order", {"id": "ord-7", "amount": 50, "gate": str(gate)})

    async def charged_and_pausing() -> bool:
        keys = [s.key for s in await client.list_steps(handle.id)]
        return keys == ["charge"] and side(side_log, "pause") == [(handle.id, worker_a.pid)]

    # The charge is recorded; the pause step (blocked on the gate) runs: no wait yet.
    await eventually(charged_and_pausing, "the charge to be recorded and the pause to start")
    assert (await client.get_execution(handle.id)).status == RUNNING
    worker_a.kill()
    gate.touch()
    worker_b = start_worker(WORKER, name="b")
    await wait_at(client, handle.id, "wait_pickup")
    await client.events.publish("warehouse.pickup/ord-7")
    result = await handle.result(timeout=30)

    assert result["payment_id"] == "pay_ord-7"
    assert side(side_log, "charge") == [(handle.id, worker_a.pid)]  # recorded: never again
    # The pause was in flight when A died: it ran again on B (at-least-once).
    assert side(side_log, "pause") == [(handle.id, worker_a.pid), (handle.id, worker_b.pid)]
    assert side(side_log, "notify") == [(handle.id, worker_b.pid)]
    execution = await client.get_execution(handle.id)
    assert execution.crashed_attempts == 1
    assert [a.outcome for a in execution.attempts] == ["crashed"]
    assert str(worker_a.pid) in (execution.attempts[0].worker_id or "")


@pytest.mark.chaos
async def test_orders__repeated_kill9__each_charge_runs_once_unless_its_attempt_crashed(
    client: PolosClient, start_worker: Workers, side_log: Path
) -> None:
    """Whatever the kills hit: a recorded charge never runs again; only a charge whose
    attempt crashed may have run twice (at-least-once), never more than once per crash."""
    n = 20
    orders: list[dict[str, Any]] = [
        {"id": f"chaos-{i}", "amount": 50, "pause": 0.3} for i in range(n)
    ]
    order_of: dict[str, str] = {}
    for round_ in range(3):
        seen = len(side_lines(side_log))
        worker = start_worker(WORKER, name=f"round-{round_}")
        if not order_of:  # the workflow is registered now
            handles = await client.invoke_many("paused_order", orders)
            order_of = {h.id: o["id"] for h, o in zip(handles, orders, strict=True)}

        async def busy_or_all_parked(seen: int = seen) -> bool:
            if len(side_lines(side_log)) > seen:
                return True
            waits = await all_waits(client, WaitKind.EVENT)
            return len(waits) == n

        await eventually(busy_or_all_parked, f"steps to run in round {round_}", interval=0.01)
        worker.kill()
    last = start_worker(WORKER, name="last")

    async def all_parked() -> bool:
        waits = await all_waits(client, WaitKind.EVENT)
        return {w.execution_id for w in waits} == set(order_of)

    await eventually(all_parked, f"all {n} orders to wait for their pickup")
    await client.events.publish_many([(f"warehouse.pickup/{o}", None) for o in order_of.values()])
    executions = await client.wait_many(list(order_of), timeout=60)

    charges = Counter(eid for eid, _ in side(side_log, "charge"))
    crashed = {ex.id: ex.crashed_attempts for ex in executions}
    print(f"crashed attempts: {sorted(crashed.values())}; charges: {sorted(charges.values())}")
    assert sum(crashed.values()) >= 1  # the first kill hit running executions
    for ex in executions:
        assert ex.status == COMPLETED, ex
        assert ex.result["payment_id"] == f"pay_{order_of[ex.id]}"
        assert ex.failed_attempts == 0
        assert 1 <= charges[ex.id] <= 1 + ex.crashed_attempts, (ex.id, charges[ex.id], ex)
        steps = {s.key: s for s in await client.list_steps(ex.id)}
        assert steps["charge"].output == {"id": f"pay_{order_of[ex.id]}"}
    # No kill after the pickups: every notify ran once, on the last worker.
    assert Counter(side(side_log, "notify")) == {(eid, last.pid): 1 for eid in order_of}


# ---------------------------------------------------------------------- 2. every wait, crashes


SLEEP_S = 7.0
"""Long enough to park (> 5 s) and to fall due after the orchestrator came back."""


@pytest.mark.chaos
@pytest.mark.parametrize("outage", ["kill9", "sigterm"])
async def test_every_wait__survives_worker_kill9_and_an_orchestrator_outage(
    outage: str,
    server: ServerProcess,
    client: PolosClient,
    start_worker: Workers,
    side_log: Path,
    tmp_path: Path,
) -> None:
    gate = tmp_path / "gate"
    worker_a = start_worker(WORKER, name="a")
    started = {
        "resume": await client.invoke("approve", {}),
        "timeout": await client.invoke("approve", {"timeout": 2}),
        "sleep": await client.invoke("sleeper", {"seconds": SLEEP_S}),
        "event": await client.invoke("event_waiter", {"topic": "outage/ev"}),
        "single": await client.invoke("parent_single", {"numbers": [21], "gate": str(gate)}),
        "batch": await client.invoke("parent_batch", {"numbers": [1, 2, 3], "gate": str(gate)}),
    }
    ids = {name: h.id for name, h in started.items()}
    expected = {
        "resume": ("approval", WaitKind.SUSPEND),
        "timeout": ("approval", WaitKind.SUSPEND),
        "sleep": ("nap", WaitKind.SLEEP),
        "event": ("ev", WaitKind.EVENT),
        "single": ("child", WaitKind.CHILD),
        "batch": ("kids", WaitKind.CHILD),
    }

    async def parked() -> dict[str, WaitInfo] | None:
        by_id = {w.execution_id: w for w in await all_waits(client)}
        if set(by_id) != set(ids.values()) or len(side(side_log, "child")) < 4:
            return None
        return {name: by_id[eid] for name, eid in ids.items()}

    waits = await eventually(parked, "every execution to wait and the 4 children to run")
    assert {n: (w.step_key, w.kind) for n, w in waits.items()} == expected
    assert waits["batch"].pending_children == 3
    before = {(w.execution_id, w.step_key, w.kind, w.expires_at) for w in waits.values()}

    worker_a.kill()
    children = await all_executions(client, "gated_double")
    assert len(children) == 4

    async def children_requeued() -> bool:
        found = [await client.get_execution(c.id) for c in children]
        return all(c.status == QUEUED and c.crashed_attempts == 1 for c in found)

    # The children ran on A: requeued. The parked executions did not notice.
    await eventually(children_requeued, "the dead worker's children to be requeued")
    after_kill = {
        (w.execution_id, w.step_key, w.kind, w.expires_at) for w in await all_waits(client)
    }
    assert after_kill == before

    if outage == "kill9":
        server.kill()
    else:
        assert server.stop() in (0, -signal.SIGTERM)
    # Stay down until the 2 s timeout has passed: nothing can fire it meanwhile.
    timeout_due = waits["timeout"].expires_at
    assert timeout_due is not None
    await asyncio.sleep(max(0.0, timeout_due / 1000 - time.time()) + 0.5)
    restarted_at = time.time()
    server.restart()

    # Every wait but the expired one is still there; that one fires at once. (The sleep is
    # due later, but a very slow restart must not make this probe flaky: it is left out.)
    untimed = {w for w in before if w[0] not in (ids["timeout"], ids["sleep"])}

    async def only_the_timeout_fired() -> bool:
        now = {(w.execution_id, w.step_key, w.kind, w.expires_at) for w in await all_waits(client)}
        return {w for w in now if w[0] != ids["sleep"]} == untimed

    await eventually(only_the_timeout_fired, "the expired timeout to fire after the restart")
    timed_out = await client.get_execution(ids["timeout"])
    assert timed_out.status == QUEUED  # no worker yet: it waits for one to see the error

    worker_b = start_worker(WORKER, name="b")
    outcome = await client.result(ids["timeout"], timeout=30)
    assert outcome["outcome"] == "timed_out"
    assert outcome["error"] == "WaitTimeoutError"
    assert "timed out" in outcome["message"]
    check_timed_out(await client.list_steps(ids["timeout"]))
    assert side(side_log, "timed_out") == [(ids["timeout"], worker_b.pid)]
    with pytest.raises(NotWaitingError, match="timed out"):
        await client.resume(ids["timeout"], "approval", {"late": True})

    await client.events.publish("outage/ev", {"after": "restart"})
    await client.resume(ids["resume"], "approval", {"approved": "after restart"})
    gate.touch()
    results = {name: await client.result(eid, timeout=45) for name, eid in ids.items()}

    assert results["resume"] == {"outcome": "resumed", "data": {"approved": "after restart"}}
    assert results["event"]["outcome"] == "event"
    assert results["event"]["data"] == {"after": "restart"}
    assert results["single"] == 42
    assert results["batch"] == [2, 4, 6]
    slept = results["sleep"]["woke"] - results["sleep"]["started"]
    print(
        f"{outage}: sleep of {SLEEP_S} s took {slept:.3f} s; "
        f"woke {results['sleep']['woke'] - restarted_at:.3f} s after the restart began"
    )
    assert slept >= SLEEP_S
    assert results["sleep"]["woke"] > restarted_at  # fired by the restarted orchestrator
    assert side(side_log, "woke") == [(ids["sleep"], worker_b.pid)]

    for name, eid in ids.items():
        execution = await client.get_execution(eid)
        assert execution.status == COMPLETED, name
        assert execution.crashed_attempts == 0, name  # waiting on a dead worker is no crash
        assert execution.failed_attempts == 0, name
    for child in children:
        execution = await client.get_execution(child.id)
        assert execution.status == COMPLETED
        assert execution.crashed_attempts == 1
        assert [a.outcome for a in execution.attempts] == ["crashed"]
    child_runs = Counter(pid for _, pid in side(side_log, "child"))
    assert child_runs == {worker_a.pid: 4, worker_b.pid: 4}


def check_timed_out(steps: Sequence[StepRecord]) -> None:
    """The 'approval' step is recorded once, with the timeout error."""
    (approval,) = [s for s in steps if s.key.startswith("approval")]
    assert approval.error is not None
    assert approval.error.type == "polos.WaitTimeoutError"
    assert "timed out after 2 s" in approval.error.message


@pytest.mark.chaos
async def test_short_sleep__worker_kill9_mid_sleep__the_same_sleep_goes_on(
    client: PolosClient, start_worker: Workers, side_log: Path
) -> None:
    """A sleep under the parking threshold runs in the worker; its wake-up time is recorded
    first, so the replay after a kill -9 sleeps only what is left, not the whole sleep again."""
    worker_a = start_worker(WORKER, name="a")
    seconds = 4.0
    handle = await client.invoke("sleeper", {"seconds": seconds})

    async def nap_recorded() -> StepRecord | None:
        return next((s for s in await client.list_steps(handle.id) if s.key == "nap"), None)

    nap = await eventually(nap_recorded, "the short sleep to record its wake-up time")
    assert (await client.get_execution(handle.id)).status == RUNNING  # in the worker
    assert await all_waits(client) == []
    await asyncio.sleep(1.5)  # well into the sleep
    killed_at = time.time()
    worker_a.kill()
    worker_b = start_worker(WORKER, name="b")
    result = await handle.result(timeout=30)

    assert isinstance(nap.output, dict)
    assert abs(nap.output["until"] - (result["started"] + seconds) * 1000) <= 1  # float ms
    assert result["woke"] - result["started"] >= seconds
    # Started over after the kill, the sleep could not have ended before killed_at + seconds.
    assert result["woke"] < killed_at + seconds
    print(f"slept {result['woke'] - result['started']:.3f} s of {seconds} s across a kill -9")
    assert side(side_log, "woke") == [(handle.id, worker_b.pid)]
    execution = await client.get_execution(handle.id)
    assert execution.crashed_attempts == 1
    assert [a.outcome for a in execution.attempts] == ["crashed"]


@pytest.mark.chaos
async def test_trigger_batch_timeout__due_while_the_orchestrator_is_down__fires_once(
    server: ServerProcess, client: PolosClient, start_worker: Workers, side_log: Path
) -> None:
    """on_bulk takes 'bulk' events 3 at a time, or fewer after 2 s: one event, then kill -9
    the orchestrator before the 2 s pass; the batch starts once after the restart."""
    start_worker(WORKER)
    first = await client.events.publish("bulk", {"n": 1})
    published_at = time.time()
    server.kill()
    await asyncio.sleep(max(0.0, published_at + 2.0 - time.time()) + 0.5)
    server.restart()

    async def runs(count: int) -> list[Execution] | None:
        found = await all_executions(client, "on_bulk")
        assert len(found) <= count, found
        return found if len(found) == count else None

    (single,) = await eventually(lambda: runs(1), "the timed-out batch to start")
    assert await client.result(single.id, timeout=30) == [{"n": 1}]
    assert single.trigger_event == [
        {"id": first.id, "topic": "bulk", "seq": 1, "created_at": first.created_at}
    ]
    # A full batch starts at once, without the timer.
    await client.events.publish_many([("bulk", {"n": n}) for n in (2, 3, 4)])
    both = await eventually(lambda: runs(2), "the full batch to start")
    (full,) = [ex for ex in both if ex.id != single.id]
    assert await client.result(full.id, timeout=30) == [{"n": 2}, {"n": 3}, {"n": 4}]
    assert [e["seq"] for e in full.trigger_event] == [2, 3, 4]
    assert sorted(eid for eid, _ in side(side_log, "bulk")) == sorted([single.id, full.id])


@pytest.mark.chaos
async def test_parking__orchestrator_kill9_while_executions_park__each_parks_once(
    server: ServerProcess, client: PolosClient, start_worker: Workers, side_log: Path
) -> None:
    """kill -9 the orchestrator while 200 executions are reaching their suspend step: after the
    restart every one waits exactly once, and every resume reaches its own execution."""
    worker = start_worker(WORKER)
    n = 200
    handles = await client.invoke_many("approve", [{}] * n)
    ids = [h.id for h in handles]

    async def some_parked() -> bool:
        return bool((await client.list_waits(WaitKind.SUSPEND, limit=1)).items)

    await eventually(some_parked, "the first execution to park", interval=0.005)
    server.kill()
    server.restart()
    parked_at_restart = len(await all_waits(client, WaitKind.SUSPEND))

    async def all_parked() -> bool:
        waits = await all_waits(client, WaitKind.SUSPEND)
        assert len(waits) == len({w.execution_id for w in waits})  # one wait per execution
        return {w.execution_id for w in waits} == set(ids)

    await eventually(all_parked, f"all {n} executions to park after the restart", timeout=45)
    assert worker.alive
    for chunk_ids in chunks(ids, 100):
        await asyncio.gather(*(client.resume(eid, "approval", {"eid": eid}) for eid in chunk_ids))
    executions = await client.wait_many(ids, timeout=60)

    for ex in executions:
        assert ex.status == COMPLETED, ex
        assert ex.result == {"outcome": "resumed", "data": {"eid": ex.id}}
        assert ex.failed_attempts == 0
    crashed = Counter(ex.crashed_attempts for ex in executions)
    print(
        f"{parked_at_restart} of {n} parked when the orchestrator came back; "
        f"crashed attempts: {dict(crashed)}"
    )
    assert await all_waits(client) == []


# ---------------------------------------------------------------------- 3./4. replicas


@pytest.mark.postgres
@pytest.mark.parametrize("store_kind", ["postgres"])
async def test_replicas__two_orchestrators_fire_every_timer_once(
    make_server: Servers, start_worker: Workers, side_log: Path
) -> None:
    a = make_server(db="shared")
    b = make_server(db="shared")
    worker_a = start_worker(WORKER, api_url=a.url, name="a")
    worker_b = start_worker(WORKER, api_url=b.url, name="b")
    n, seconds = 20, 6.0
    async with PolosClient(a.url) as client_a, PolosClient(b.url) as client_b:
        clients = [client_a, client_b]
        handles = await asyncio.gather(
            *(clients[i % 2].invoke("sleeper", {"seconds": seconds}) for i in range(n))
        )
        ids = [h.id for h in handles]
        # A trigger batch timer too (on_bulk: 3 events, or fewer after 2 s).
        await client_b.events.publish("bulk", {"n": 1})

        async def all_sleeping() -> bool:
            waits = await all_waits(client_b, WaitKind.SLEEP)
            return {w.execution_id for w in waits} == set(ids)

        await eventually(all_sleeping, f"all {n} sleepers to park")
        executions = await client_a.wait_many(ids, timeout=60)
        assert await all_waits(client_a) == []
        (bulk,) = await all_executions(client_a, "on_bulk")
        assert await client_a.result(bulk.id, timeout=30) == [{"n": 1}]
        assert len(side(side_log, "bulk")) == 1

    assert Counter(eid for eid, _ in side(side_log, "woke")) == dict.fromkeys(ids, 1)
    late = []
    for ex in executions:
        assert ex.status == COMPLETED, ex
        assert ex.attempt == 2  # parked, then woken once
        assert ex.crashed_attempts == 0
        assert ex.failed_attempts == 0
        assert ex.attempts == []
        slept = ex.result["woke"] - ex.result["started"]
        assert slept >= seconds
        late.append(slept - seconds)
    by_pid = Counter(pid for _, pid in side(side_log, "woke"))
    print(
        f"{n} timers of {seconds} s on 2 orchestrators: late by {min(late):.3f}..{max(late):.3f} s; "
        f"woken on worker A {by_pid[worker_a.pid]}x, worker B {by_pid[worker_b.pid]}x"
    )


@pytest.mark.postgres
@pytest.mark.parametrize("store_kind", ["postgres"])
async def test_replicas__two_orchestrators_start_one_execution_per_event(
    make_server: Servers, start_worker: Workers, side_log: Path
) -> None:
    a = make_server(db="shared")
    b = make_server(db="shared")
    start_worker(WORKER, api_url=a.url)  # registers the 'ping' trigger
    n, keys = 50, 10
    async with PolosClient(a.url) as client_a, PolosClient(b.url) as client_b:
        clients = [client_a, client_b]
        published = await asyncio.gather(
            *(clients[i % 2].events.publish("ping", {"n": i}) for i in range(n))
        )
        assert sorted(p.seq for p in published) == list(range(1, n + 1))
        assert all(p.created and len(p.triggered) == 1 for p in published)
        triggered = [p.triggered[0] for p in published]

        # The same idempotency key sent to both orchestrators at once: one event.
        raced = await asyncio.gather(
            *(
                c.events.publish("ping", {"key": k}, idempotency_key=f"race-{k}")
                for k in range(keys)
                for c in clients
            )
        )
        for k in range(keys):
            first, second = raced[2 * k], raced[2 * k + 1]
            assert (first.id, first.seq) == (second.id, second.seq), k
            assert sorted([first.created, second.created]) == [False, True], k
            (winner,) = [p for p in (first, second) if p.created]
            (loser,) = [p for p in (first, second) if not p.created]
            assert len(winner.triggered) == 1
            assert loser.triggered == []
            triggered.append(winner.triggered[0])
        total = n + keys
        assert len(set(triggered)) == total

        done = await client_a.wait_many(triggered, timeout=60)
        assert all(ex.status == COMPLETED for ex in done)
        events = await client_b.events.list("ping", limit=1000)
        assert [e.seq for e in events.items] == list(range(1, total + 1))
        runs = await all_executions(client_b, "on_ping")

    assert len(runs) == total
    assert sorted(ex.trigger_event["seq"] for ex in runs) == list(range(1, total + 1))
    assert {ex.id for ex in runs} == set(triggered)
    ping_lines = Counter(
        line.split()[1] for line in side_lines(side_log) if line.startswith("ping ")
    )
    assert ping_lines == {str(seq): 1 for seq in range(1, total + 1)}


@pytest.mark.postgres
@pytest.mark.parametrize("store_kind", ["postgres"])
async def test_replicas__children_finishing_on_two_orchestrators_wake_each_parent_once(
    make_server: Servers, start_worker: Workers, side_log: Path, tmp_path: Path
) -> None:
    a = make_server(db="shared")
    b = make_server(db="shared")
    # Few slots each: both workers (so both orchestrators) finish children.
    few = {"MAX_CONCURRENT": "5"}
    worker_a = start_worker(WORKER, api_url=a.url, name="a", env=few)
    worker_b = start_worker(WORKER, api_url=b.url, name="b", env=few)
    gate = tmp_path / "gate"
    gate.touch()  # the children do not block
    parents, kids = 6, 20
    async with PolosClient(a.url) as client_a, PolosClient(b.url) as client_b:
        clients = [client_a, client_b]
        handles = await asyncio.gather(
            *(
                clients[p % 2].invoke(
                    "parent_batch",
                    {"numbers": list(range(p * 100, p * 100 + kids)), "gate": str(gate)},
                )
                for p in range(parents)
            )
        )
        executions = await client_b.wait_many([h.id for h in handles], timeout=60)
        children = await all_executions(client_a, "gated_double")

    for p, ex in enumerate(executions):
        assert ex.status == COMPLETED, ex
        assert ex.result == [2 * n for n in range(p * 100, p * 100 + kids)]
        assert ex.attempt == 2  # parked once, woken once
        assert ex.crashed_attempts == ex.failed_attempts == 0
    assert len(children) == parents * kids
    assert all(c.status == COMPLETED and c.attempt == 1 for c in children)
    ran_on = Counter(pid for _, pid in side(side_log, "child"))
    assert sum(ran_on.values()) == parents * kids
    assert set(ran_on) == {worker_a.pid, worker_b.pid}
    print(f"{parents * kids} children ran on workers {dict(ran_on)}")


# ---------------------------------------------------------------------- 5. races on one wait


async def test_events__published_while_waits_register__none_is_lost(
    make_server: Servers, start_worker: Workers, store_kind: str
) -> None:
    """50 executions each wait on their own topic while a task per topic keeps publishing
    on it (through a second orchestrator too, on PostgreSQL) until its execution ends."""
    server = make_server()
    urls = [server.url]
    if store_kind == "postgres":
        urls.append(make_server(db="polos.db").url)
    start_worker(WORKER, api_url=server.url)
    n = 50
    topics = [f"race/{i}" for i in range(n)]
    clients = [PolosClient(url) for url in urls]
    try:
        client = clients[0]
        handles = await client.invoke_many("event_waiter", [{"topic": t} for t in topics])
        ends = [asyncio.create_task(client.wait(h.id, timeout=60)) for h in handles]

        async def hammer(i: int) -> dict[int, Any]:
            sent: dict[int, Any] = {}
            publisher = clients[i % len(clients)]
            while not ends[i].done():
                published = await publisher.events.publish(topics[i], {"n": len(sent)})
                sent[published.seq] = published.data
            return sent

        sent = await asyncio.gather(*(hammer(i) for i in range(n)))
        executions = [end.result() for end in ends]
        leftover = await all_waits(client)
    finally:
        for c in clients:
            await c.aclose()

    total = sum(len(s) for s in sent)
    print(f"{store_kind}: {total} events published on {n} topics until every waiter woke")
    assert leftover == []
    for i, ex in enumerate(executions):
        assert ex.status == COMPLETED, ex
        assert ex.result["outcome"] == "event"
        assert ex.result["seq"] in sent[i]
        assert ex.result["data"] == sent[i][ex.result["seq"]]


async def test_waits__resumes_racing_the_timeout_end_each_wait_exactly_once(
    make_server: Servers, start_worker: Workers, side_log: Path, store_kind: str
) -> None:
    """Resumes sent around a suspend's deadline (to two orchestrators on PostgreSQL) while
    the timers fire: each wait ends once, and what the resumers were told is what happened."""
    server = make_server()
    urls = [server.url]
    if store_kind == "postgres":
        urls.append(make_server(db="polos.db").url)
    start_worker(WORKER, api_url=server.url)
    n = 20
    clients = [PolosClient(url) for url in urls]
    try:
        client = clients[0]
        handles = await client.invoke_many("approve", [{"timeout": 2}] * n)
        ids = [h.id for h in handles]

        async def all_parked() -> dict[str, WaitInfo] | None:
            waits = {w.execution_id: w for w in await all_waits(client, WaitKind.SUSPEND)}
            return waits if set(waits) == set(ids) else None

        waits = await eventually(all_parked, f"all {n} approvals to wait")

        refused_early: list[tuple[str, float]] = []
        timings: list[tuple[float, float, bool]] = []

        async def resume_at(eid: str, at: float, via: PolosClient, who: str) -> str | None:
            await asyncio.sleep(max(0.0, at - time.time()))
            sent = time.time()
            deadline = (waits[eid].expires_at or 0) / 1000
            try:
                await via.resume(eid, "approval", {"by": who})
            except NotWaitingError:
                answered = time.time()
                timings.append((sent - deadline, answered - deadline, False))
                if answered < deadline:
                    refused_early.append((eid, deadline - answered))
                return None
            timings.append((sent - deadline, time.time() - deadline, True))
            return who

        calls = []
        for i, eid in enumerate(ids):
            expires_at = waits[eid].expires_at
            assert expires_at is not None
            # From 150 ms before to 150 ms after the deadline, two resumes each.
            at = expires_at / 1000 + (i - n / 2) * 0.015
            for j, via in enumerate(clients * (2 // len(clients))):
                calls.append(resume_at(eid, at + 0.002 * j, via, f"{eid}/{j}"))
        winners = [w for w in await asyncio.gather(*calls) if w is not None]
        executions = await client.wait_many(ids, timeout=30)
        await_steps = {eid: await client.list_steps(eid) for eid in ids}
    finally:
        for c in clients:
            await c.aclose()

    won = Counter(w.split("/")[0] for w in winners)
    sent_early = [t for t in timings if t[0] < 0]
    print(
        f"{store_kind}: {len(sent_early)} resumes sent before their deadline, "
        f"{sum(ok for *_, ok in sent_early)} of them accepted"
    )
    # Refused before the deadline: only because the other resume had won.
    assert {eid for eid, _ in refused_early} <= set(won), refused_early
    assert all(count == 1 for count in won.values()), won
    outcomes: Counter[str] = Counter()
    for ex in executions:
        assert ex.status == COMPLETED, ex
        assert ex.crashed_attempts == 0
        outcomes[ex.result["outcome"]] += 1
        if ex.id in won:
            (winner,) = [w for w in winners if w.startswith(ex.id + "/")]
            assert ex.result == {"outcome": "resumed", "data": {"by": winner}}
        else:
            assert ex.result["outcome"] == "timed_out", ex.result
            # A timer never fires early.
            (approval,) = await_steps[ex.id]
            assert approval.completed_at is not None
            expires_at = waits[ex.id].expires_at
            assert expires_at is not None
            assert approval.completed_at >= expires_at
    timed_out = {eid for eid, _ in side(side_log, "timed_out")}
    assert timed_out == {ex.id for ex in executions if ex.id not in won}
    print(f"{store_kind}: {dict(outcomes)}")


# ---------------------------------------------------------------------- 6. 10,000 waits


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_scale__10000_suspended_executions_hold_no_worker_memory(
    make_server: Servers, start_worker: Workers, store_kind: str
) -> None:
    server = make_server()
    worker = start_worker(WORKER, api_url=server.url, env={"MAX_CONCURRENT": "200"})
    warm_up, n = 200, 10_000
    async with PolosClient(server.url) as client:

        async def none_left_to_park() -> bool:
            page = await client.list_executions(status=["queued", "running"], limit=1)
            return not page.items

        await client.invoke_many("approve", [{}] * warm_up)
        await eventually(none_left_to_park, "the warm-up executions to park", timeout=60)
        rss_before = rss_kb(worker.pid)

        started = time.perf_counter()
        handles = []
        payloads: list[dict[str, Any]] = [{}] * n
        for chunk in chunks(payloads, 1000):
            handles += await client.invoke_many("approve", chunk)
        created_s = time.perf_counter() - started
        await eventually(none_left_to_park, f"{n} executions to park", timeout=120, interval=0.5)
        parked_s = time.perf_counter() - started
        rss_after = rss_kb(worker.pid)

        started = time.perf_counter()
        waits = await all_waits(client, WaitKind.SUSPEND, limit=500)
        list_s = time.perf_counter() - started
        assert len(waits) == warm_up + n
        assert {w.execution_id for w in waits} >= {h.id for h in handles}

        to_resume = [w.execution_id for w in waits[-1000:]]
        started = time.perf_counter()
        for chunk_ids in chunks(to_resume, 100):
            await asyncio.gather(
                *(client.resume(eid, "approval", {"i": i}) for i, eid in enumerate(chunk_ids))
            )
        resume_s = time.perf_counter() - started
        done = await client.wait_many(to_resume, timeout=120)
        completed_s = time.perf_counter() - started
        still_waiting = len(await all_waits(client, WaitKind.SUSPEND, limit=500))

    growth_mb = (rss_after - rss_before) / 1024
    print(
        f"\n{store_kind}: worker RSS {rss_before / 1024:.1f} MB with {warm_up} parked -> "
        f"{rss_after / 1024:.1f} MB with {warm_up + n} parked (+{growth_mb:.2f} MB); "
        f"created {n} in {created_s:.2f} s, all parked after {parked_s:.2f} s; "
        f"listed {len(waits)} waits (500 per page) in {list_s:.2f} s; "
        f"resumed 1000 (100 at a time) in {resume_s:.2f} s, all completed after {completed_s:.2f} s"
    )
    assert all(ex.status == COMPLETED for ex in done)
    assert all(ex.result["outcome"] == "resumed" for ex in done)
    assert still_waiting == warm_up + n - 1000
    assert growth_mb < 50
