"""Cron schedules in the store, with a fake clock, on SQLite and PostgreSQL.

Every firing takes ``now`` explicitly, so slots, DST transitions and downtime are
exact and instant. The process-level tests (API, client, CLI, two orchestrators)
are in ``test_schedules_api.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa

from polos.protocol import (
    DEFAULT_PROJECT_ID,
    CreateScheduleRequest,
    RetryPolicySpec,
    Schedule,
    SchedulePayload,
    UpdateScheduleRequest,
    WorkflowSpec,
    slot_datetime,
)
from polos.storage import CancelOp, ScheduleRefused, Store, open_store, schedule_queue
from polos.storage import _tables as tables

pytestmark = pytest.mark.timeout(60)

P = DEFAULT_PROJECT_ID
BERLIN = "Europe/Berlin"


def ms(*parts: int) -> int:
    """Epoch ms of a UTC date."""
    return int(datetime(*parts, tzinfo=UTC).timestamp() * 1000)  # type: ignore[misc]


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    s = await open_store(db_url)
    try:
        await s.ensure_project(P, "Default project")
        await register(s, spec("tick"))
        yield s
    finally:
        await s.close()


def spec(workflow_id: str, **options: Any) -> WorkflowSpec:
    return WorkflowSpec(
        id=workflow_id,
        fingerprint="fp",
        retry=RetryPolicySpec(),
        max_recovery_attempts=5,
        options=options,
    )


async def register(store: Store, *specs: WorkflowSpec, worker: str = "w-1") -> None:
    await store.register_worker(
        project_id=P,
        worker_id=worker,
        name="test",
        hostname="host",
        pid=1,
        orchestrator_id="orch",
        max_concurrent=10,
        workflows=list(specs),
        active={},
        lease_ms=5000,
    )


async def create(store: Store, now: int, **fields: Any) -> Schedule:
    body = CreateScheduleRequest.model_validate({"workflow_id": "tick", **fields})
    result = await store.schedules.create(P, body, now=now)
    assert not isinstance(result, ScheduleRefused), result
    return result[0]


async def runs(store: Store, schedule_id: str) -> list[dict[str, Any]]:
    """The schedule's executions, oldest slot first: payload, idempotency key, queue, status."""
    ex = tables.executions

    def go(conn: sa.Connection) -> list[dict[str, Any]]:
        rows = conn.execute(
            sa.select(ex.c.id, ex.c.payload, ex.c.idempotency_key, ex.c.queue, ex.c.status).where(
                ex.c.schedule_id == schedule_id
            )
        ).mappings()
        return [dict(r) for r in rows.all()]

    items = await store.read(go)
    for item in items:
        item["payload"] = SchedulePayload.model_validate_json(item["payload"])
    return sorted(items, key=lambda i: i["payload"].timestamp)


def slots(items: list[dict[str, Any]], tz: str = "UTC") -> list[str]:
    return [
        slot_datetime(int(i["payload"].timestamp.timestamp() * 1000), tz).isoformat() for i in items
    ]


# ---------------------------------------------------------------------- firing


async def test_fire__one_execution_per_slot_carrying_the_slot_time(store: Store) -> None:
    s = await create(
        store, ms(2026, 1, 1, 9, 1), cron="*/5 * * * *", payload={"plan": "pro"}, overlap="allow"
    )
    assert s.next_at == ms(2026, 1, 1, 9, 5)
    assert (await store.schedules.fire_due(now=ms(2026, 1, 1, 9, 4, 59))).schedules == 0

    first = await store.schedules.fire_due(now=ms(2026, 1, 1, 9, 5, 0) + 40)
    again = await store.schedules.fire_due(now=ms(2026, 1, 1, 9, 5, 0) + 60)
    assert len(first.started) == 1
    assert (again.schedules, again.started) == (0, [])
    second = await store.schedules.fire_due(now=ms(2026, 1, 1, 9, 10, 0) + 5)
    assert len(second.started) == 1

    items = await runs(store, s.id)
    assert slots(items) == ["2026-01-01T09:05:00+00:00", "2026-01-01T09:10:00+00:00"]
    first_payload, second_payload = items[0]["payload"], items[1]["payload"]
    assert first_payload.last_timestamp is None
    assert second_payload.last_timestamp == first_payload.timestamp
    assert first_payload.upcoming == second_payload.timestamp
    assert (second_payload.schedule_id, second_payload.key) == (s.id, "global")
    assert second_payload.data == {"plan": "pro"}
    assert not second_payload.manual
    assert items[1]["idempotency_key"] == f"schedule:{s.id}:{ms(2026, 1, 1, 9, 10)}"
    after = await store.schedules.get(P, s.id)
    assert after is not None
    assert after.next_at == ms(2026, 1, 1, 9, 15)
    assert after.last_slot_at == ms(2026, 1, 1, 9, 10)
    assert after.last_execution_id == items[1]["id"]


async def test_fire__berlin_dst_transitions(store: Store) -> None:
    nightly = await create(
        store, ms(2026, 3, 27, 12), cron="30 2 * * *", timezone=BERLIN, overlap="allow"
    )
    hourly = await create(
        store, ms(2026, 10, 24, 22), cron="30 * * * *", timezone=BERLIN, key="h", overlap="allow"
    )
    # Walk a fake clock in 15-minute steps through both transitions.
    for start, end in (
        (ms(2026, 3, 27, 23), ms(2026, 3, 30, 2)),
        (ms(2026, 10, 24, 22), ms(2026, 10, 26, 3)),
    ):
        for now in range(start, end, 15 * 60_000):
            await store.schedules.fire_due(now=now)

    assert slots(await runs(store, nightly.id), BERLIN) == [
        "2026-03-28T02:30:00+01:00",
        "2026-03-29T03:00:00+02:00",  # 02:30 did not exist: run when the gap ends
        "2026-03-30T02:30:00+02:00",
        "2026-10-24T02:30:00+02:00",  # the clock jumped to October: catch-up "once"
        "2026-10-25T02:30:00+02:00",  # 02:30 happened twice: run once
        "2026-10-26T02:30:00+01:00",
    ]
    hours = slots(await runs(store, hourly.id), BERLIN)
    fall = [h for h in hours if h.startswith("2026-10-25T0")]
    assert fall == [
        "2026-10-25T00:30:00+02:00",
        "2026-10-25T01:30:00+02:00",
        "2026-10-25T02:30:00+02:00",
        "2026-10-25T03:30:00+01:00",
        "2026-10-25T04:30:00+01:00",
        "2026-10-25T05:30:00+01:00",
        "2026-10-25T06:30:00+01:00",
        "2026-10-25T07:30:00+01:00",
        "2026-10-25T08:30:00+01:00",
        "2026-10-25T09:30:00+01:00",
    ]
    assert len(hours) == len(set(hours))


async def test_fire__catch_up_policies_after_downtime(store: Store) -> None:
    t0 = ms(2026, 1, 1, 0, 0, 30)
    once = await create(store, t0, cron="0 * * * *", key="once", overlap="allow")
    skip = await create(store, t0, cron="0 * * * *", key="skip", catchup="skip", overlap="allow")
    every = await create(store, t0, cron="0 * * * *", key="all", catchup="all", overlap="allow")

    # Down for 5 h 20 min: slots 01:00 .. 05:00 were missed.
    fired = await store.schedules.fire_due(now=ms(2026, 1, 1, 5, 20))
    assert fired.schedules == 3
    assert slots(await runs(store, once.id)) == ["2026-01-01T05:00:00+00:00"]
    assert slots(await runs(store, skip.id)) == []
    assert slots(await runs(store, every.id)) == [
        f"2026-01-01T0{h}:00:00+00:00" for h in range(1, 6)
    ]
    for s in (once, skip, every):
        after = await store.schedules.get(P, s.id)
        assert after is not None and after.next_at == ms(2026, 1, 1, 6)

    # Back to normal: every policy runs the on-time slot.
    await store.schedules.fire_due(now=ms(2026, 1, 1, 6, 0, 1))
    assert len(await runs(store, once.id)) == 2
    assert len(await runs(store, skip.id)) == 1
    assert len(await runs(store, every.id)) == 6


async def test_fire__overlap_skip_waits_for_the_previous_run(store: Store) -> None:
    s = await create(store, ms(2026, 1, 1), cron="* * * * *")  # overlap: skip (default)
    await store.schedules.fire_due(now=ms(2026, 1, 1, 0, 1))
    first = await runs(store, s.id)
    assert len(first) == 1 and first[0]["status"] == "queued"

    skipped = await store.schedules.fire_due(now=ms(2026, 1, 1, 0, 2))
    assert (skipped.schedules, skipped.started, skipped.skipped) == (1, [], 1)
    assert len(await runs(store, s.id)) == 1

    await store.apply_batch([CancelOp(P, first[0]["id"], "test")])
    await store.schedules.fire_due(now=ms(2026, 1, 1, 0, 3))
    assert slots(await runs(store, s.id)) == [
        "2026-01-01T00:01:00+00:00",
        "2026-01-01T00:03:00+00:00",
    ]


async def test_fire__overlap_allow_and_queue(store: Store) -> None:
    allow = await create(store, ms(2026, 1, 1), cron="* * * * *", key="a", overlap="allow")
    queued = await create(
        store, ms(2026, 1, 1), cron="* * * * *", key="q", overlap="queue", catchup="all"
    )
    for minute in (1, 2):
        await store.schedules.fire_due(now=ms(2026, 1, 1, 0, minute))
    await store.schedules.fire_due(now=ms(2026, 1, 1, 0, 5))  # three missed, all run

    assert [r["status"] for r in await runs(store, allow.id)] == ["queued"] * 3
    queued_runs = await runs(store, queued.id)
    assert len(queued_runs) == 5
    assert {r["queue"] for r in queued_runs} == {schedule_queue(queued.id)}
    assert {r["queue"] for r in await runs(store, allow.id)} == {None}

    q = tables.queues
    limit = await store.read(
        lambda conn: conn.scalar(
            sa.select(q.c.concurrency_limit).where(
                q.c.project_id == P, q.c.name == schedule_queue(queued.id)
            )
        )
    )
    assert limit == 1


async def test_fire__two_firers_at_once_start_one_execution_per_slot(
    store: Store, db_url: str
) -> None:
    other = await open_store(db_url)
    try:
        t0 = ms(2026, 1, 1)
        made = [
            await create(store, t0, cron="* * * * *", key=f"k{i}", catchup="all", overlap="allow")
            for i in range(30)
        ]
        now = ms(2026, 1, 1, 0, 8, 30)  # 8 slots due for each schedule
        for _ in range(3):
            await asyncio.gather(
                *(s.schedules.fire_due(now=now, limit=7) for s in (store, other, store, other))
            )
        for s in made:
            items = await runs(store, s.id)
            assert slots(items) == [f"2026-01-01T00:0{m}:00+00:00" for m in range(1, 9)]
            assert len({i["idempotency_key"] for i in items}) == 8
    finally:
        await other.close()


# ---------------------------------------------------------------------- changes


async def test_pause_resume_update_delete_and_trigger(store: Store) -> None:
    s = await create(store, ms(2026, 1, 1), cron="0 * * * *", timezone=BERLIN)
    paused = await store.schedules.set_paused(P, s.id, True, now=ms(2026, 1, 1, 0, 30))
    assert isinstance(paused, Schedule)
    assert (paused.status, paused.next_at) == ("paused", None)
    assert (await store.schedules.fire_due(now=ms(2026, 1, 1, 6))).schedules == 0

    resumed = await store.schedules.set_paused(P, s.id, False, now=ms(2026, 1, 1, 6, 10))
    assert isinstance(resumed, Schedule)
    assert resumed.next_at == ms(2026, 1, 1, 7)  # slots passed while paused do not run

    updated = await store.schedules.update(
        P,
        s.id,
        UpdateScheduleRequest(cron="30 9 * * *", payload={"v": 2}),
        now=ms(2026, 1, 1, 6, 11),
    )
    assert isinstance(updated, Schedule)
    assert (updated.cron, updated.payload) == ("30 9 * * *", {"v": 2})
    assert updated.next_at == ms(2026, 1, 1, 8, 30)  # 09:30 in Berlin
    policies = await store.schedules.update(P, s.id, UpdateScheduleRequest(overlap="allow"))
    assert isinstance(policies, Schedule)
    assert (policies.overlap, policies.next_at, policies.payload) == (
        "allow",
        updated.next_at,
        {"v": 2},
    )

    first = await store.schedules.trigger(P, s.id, "retry-1", now=ms(2026, 1, 1, 7))
    again = await store.schedules.trigger(P, s.id, "retry-1", now=ms(2026, 1, 1, 7, 1))
    assert not isinstance(first, ScheduleRefused) and not isinstance(again, ScheduleRefused)
    assert first.created and not again.created
    assert again.execution_id == first.execution_id
    (run,) = await runs(store, s.id)
    assert run["payload"].manual
    assert run["payload"].timestamp == datetime(2026, 1, 1, 7, tzinfo=UTC)
    assert run["payload"].data == {"v": 2}

    deleted = await store.schedules.delete(P, s.id)
    assert isinstance(deleted, Schedule) and deleted.id == s.id
    assert await store.schedules.get(P, s.id) is None
    for refused in (
        await store.schedules.delete(P, s.id),
        await store.schedules.set_paused(P, s.id, True),
        await store.schedules.trigger(P, s.id),
        await store.schedules.update(P, s.id, UpdateScheduleRequest(cron="* * * * *")),
    ):
        assert isinstance(refused, ScheduleRefused) and refused.code == "schedule_not_found"


async def test_create__is_an_upsert_per_workflow_and_key(store: Store) -> None:
    first = await store.schedules.create(
        P, CreateScheduleRequest(workflow_id="tick", cron="0 9 * * *", key="u1"), now=ms(2026, 1, 1)
    )
    second = await store.schedules.create(
        P,
        CreateScheduleRequest(workflow_id="tick", cron="0 10 * * *", key="u1"),
        now=ms(2026, 1, 1),
    )
    other = await store.schedules.create(
        P, CreateScheduleRequest(workflow_id="tick", cron="0 9 * * *", key="u2"), now=ms(2026, 1, 1)
    )
    assert isinstance(first, tuple) and isinstance(second, tuple) and isinstance(other, tuple)
    assert first[1] and not second[1] and other[1]
    assert first[0].id == second[0].id != other[0].id
    assert (second[0].cron, second[0].next_at) == ("0 10 * * *", ms(2026, 1, 1, 10))

    page, cursor = await store.schedules.list_schedules(P, limit=1)
    assert [s.key for s in page] == ["u1"] and cursor == ("tick", "u1")
    page, cursor = await store.schedules.list_schedules(P, limit=5, cursor=cursor)
    assert [s.key for s in page] == ["u2"] and cursor is None
    assert await store.schedules.list_schedules(P, workflow_id="nope") == ([], None)

    unknown = await store.schedules.create(
        P, CreateScheduleRequest(workflow_id="nope", cron="* * * * *")
    )
    assert isinstance(unknown, ScheduleRefused) and unknown.code == "workflow_not_found"
    await register(store, spec("on_event", trigger_on_event="things/new"), worker="w-2")
    evented = await store.schedules.create(
        P, CreateScheduleRequest(workflow_id="on_event", cron="* * * * *")
    )
    assert isinstance(evented, ScheduleRefused) and evented.code == "event_triggered"


# ---------------------------------------------------------------------- declared in code


async def test_decorator_schedules__sync_on_registration(store: Store) -> None:
    declared = {"cron": "30 2 * * *", "timezone": BERLIN, "key": "global"}
    await register(store, spec("nightly", schedule=declared))
    (s,) = (await store.schedules.list_schedules(P, workflow_id="nightly"))[0]
    assert (s.source, s.cron, s.timezone, s.status) == ("decorator", "30 2 * * *", BERLIN, "active")

    # Re-registering the same declaration keeps next_at (no slot re-run or skipped).
    def shift(conn: sa.Connection) -> None:
        sc = tables.schedules
        conn.execute(sc.update().where(sc.c.id == s.id).values(next_at=12345))

    await store.write(shift)
    await register(store, spec("nightly", schedule=declared))
    kept = await store.schedules.get(P, s.id)
    assert kept is not None and kept.next_at == 12345

    # The API may pause it (and it stays paused), but not change it.
    await store.schedules.set_paused(P, s.id, True)
    refused = await store.schedules.update(P, s.id, UpdateScheduleRequest(cron="0 3 * * *"))
    assert isinstance(refused, ScheduleRefused) and refused.code == "declared_in_code"
    refused = await store.schedules.create(
        P, CreateScheduleRequest(workflow_id="nightly", cron="0 3 * * *")
    )
    assert isinstance(refused, ScheduleRefused) and refused.code == "declared_in_code"
    await register(store, spec("nightly", schedule={**declared, "cron": "0 3 * * *"}))
    changed = await store.schedules.get(P, s.id)
    assert changed is not None
    assert (changed.cron, changed.status) == ("0 3 * * *", "paused")

    # An API schedule of another key is left alone; a dropped declaration is deleted.
    api = await store.schedules.create(
        P, CreateScheduleRequest(workflow_id="nightly", cron="0 4 * * *", key="u1")
    )
    assert isinstance(api, tuple)
    await register(store, spec("nightly", schedule=True))
    left = (await store.schedules.list_schedules(P, workflow_id="nightly"))[0]
    assert [(x.key, x.source) for x in left] == [("u1", "api")]
