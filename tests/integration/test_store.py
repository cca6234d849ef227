"""The storage layer against a real database file: creation, claims, fencing, retries, recovery.

Every test runs on a fresh, migrated database, once on SQLite and once on
PostgreSQL: the ``db_url`` fixture (tests/conftest.py) is parametrized over both.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import pytest
import sqlalchemy as sa

from polos.protocol import (
    DEFAULT_PROJECT_ID,
    ErrorInfo,
    Execution,
    RetryPolicySpec,
    StepKind,
    StepRecord,
    Task,
    WorkflowSpec,
    now_ms,
)
from polos.storage import (
    NO_WORKFLOW,
    OK,
    STALE,
    Cancelled,
    CancelOp,
    ClaimOp,
    CompleteOp,
    Created,
    CreateExecution,
    FailOp,
    RecordStepOp,
    ReleaseOp,
    Store,
    WriteBatcher,
    WriteOp,
    WriteResult,
    open_store,
)
from polos.storage import _tables as tables

P = DEFAULT_PROJECT_ID
ORCH = "orch-1"

# ---------------------------------------------------------------------------- fixtures


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    """A migrated store with the default project, closed after the test."""
    s = await open_store(db_url)
    try:
        await s.ensure_project(P, "Default project")
        yield s
    finally:
        await s.close()


# ---------------------------------------------------------------------------- helpers


def spec(
    workflow_id: str,
    *,
    fingerprint: str = "fp-1",
    retry: RetryPolicySpec | None = None,
    max_recovery_attempts: int = 20,
) -> WorkflowSpec:
    return WorkflowSpec(
        id=workflow_id,
        fingerprint=fingerprint,
        retry=retry or RetryPolicySpec(),
        max_recovery_attempts=max_recovery_attempts,
    )


async def register(
    store: Store,
    worker_id: str,
    workflows: Sequence[WorkflowSpec],
    *,
    active: Mapping[str, int] | None = None,
    orchestrator_id: str = ORCH,
) -> list[str]:
    return await store.register_worker(
        project_id=P,
        worker_id=worker_id,
        name=worker_id,
        hostname="test-host",
        pid=1234,
        orchestrator_id=orchestrator_id,
        max_concurrent=100,
        workflows=workflows,
        active=active or {},
        lease_ms=60_000,
    )


async def one(store: Store, op: WriteOp) -> WriteResult:
    """Apply a single op; raise its error if it failed."""
    outcome = await store.apply_batch([op])
    [result] = outcome.results
    if isinstance(result, BaseException):
        raise result
    return result


async def create(store: Store, workflow_id: str, **kwargs: Any) -> Execution:
    kwargs.setdefault("payload_json", '{"n": 1}')
    result = await one(store, CreateExecution(project_id=P, workflow_id=workflow_id, **kwargs))
    assert isinstance(result, Created), result
    assert result.created
    return result.execution


async def claim(store: Store, worker_id: str, limit: int = 100) -> list[Task]:
    result = await one(store, ClaimOp(P, worker_id, limit))
    assert isinstance(result, list)
    return result


async def get(store: Store, execution_id: str) -> Execution:
    execution = await store.get_execution(P, execution_id)
    assert execution is not None
    return execution


def step(key: str, seq: int, output: Any = None, *, error: ErrorInfo | None = None) -> StepRecord:
    return StepRecord(
        key=key,
        seq=seq,
        kind=StepKind.RUN,
        output=output,
        error=error,
        started_at=now_ms(),
        completed_at=now_ms(),
    )


async def make_available_now(store: Store, execution_id: str) -> None:
    """Skip a backoff delay (instead of sleeping through it)."""

    def go(conn: sa.Connection) -> None:
        conn.execute(
            tables.executions.update()
            .where(tables.executions.c.id == execution_id)
            .values(available_at=now_ms() - 1)
        )

    await store.write(go)


BOOM = ErrorInfo(type="ValueError", message="boom")


# ---------------------------------------------------------------------------- create


async def test_create_execution__same_idempotency_key_returns_same_execution(store: Store) -> None:
    await register(store, "w1", [spec("wf")])
    first = await one(store, CreateExecution(P, "wf", '{"a": 1}', idempotency_key="k-1"))
    again = await one(store, CreateExecution(P, "wf", '{"a": 2}', idempotency_key="k-1"))
    other = await one(store, CreateExecution(P, "wf", '{"a": 3}', idempotency_key="k-2"))

    assert isinstance(first, Created) and isinstance(again, Created) and isinstance(other, Created)
    assert first.created is True
    assert again.created is False
    assert again.execution.id == first.execution.id
    assert again.execution.payload == {"a": 1}  # the first call's execution, unchanged
    assert other.created is True and other.execution.id != first.execution.id
    items, _ = await store.list_executions(P)
    assert len(items) == 2


async def test_create_execution__same_idempotency_key_in_one_batch_creates_once(
    store: Store,
) -> None:
    await register(store, "w1", [spec("wf")])
    outcome = await store.apply_batch(
        [CreateExecution(P, "wf", "1", idempotency_key="dup") for _ in range(3)]
    )
    results = outcome.results
    assert all(isinstance(r, Created) for r in results), results
    assert [r.created for r in results] == [True, False, False]  # type: ignore[union-attr]
    assert len({r.execution.id for r in results}) == 1  # type: ignore[union-attr]


async def test_create_execution__unregistered_workflow_returns_no_workflow(store: Store) -> None:
    await register(store, "w1", [spec("known")])
    result = await one(store, CreateExecution(P, "unknown", "null"))
    assert result == NO_WORKFLOW
    items, _ = await store.list_executions(P)
    assert items == []


# ---------------------------------------------------------------------------- claim


async def test_claim__only_workflows_the_worker_registered(store: Store) -> None:
    await register(store, "w-a", [spec("wf-a")])
    await register(store, "w-b", [spec("wf-b")])
    a = await create(store, "wf-a")
    b = await create(store, "wf-b")

    tasks = await claim(store, "w-a")
    assert [t.execution_id for t in tasks] == [a.id]
    assert (await get(store, b.id)).status == "queued"

    tasks = await claim(store, "w-b")
    assert [t.execution_id for t in tasks] == [b.id]
    assert await claim(store, "w-a") == []
    assert await claim(store, "unknown-worker") == []


async def test_claim__respects_limit_and_priority_order(store: Store) -> None:
    await register(store, "w1", [spec("wf")])
    by_priority: dict[int, str] = {}
    for priority in (0, 5, -1, 10, 3):
        by_priority[priority] = (await create(store, "wf", priority=priority)).id

    first = await claim(store, "w1", limit=2)
    assert {t.execution_id for t in first} == {by_priority[10], by_priority[5]}
    second = await claim(store, "w1", limit=1)
    assert [t.execution_id for t in second] == [by_priority[3]]
    third = await claim(store, "w1", limit=5)
    assert {t.execution_id for t in third} == {by_priority[0], by_priority[-1]}
    assert await claim(store, "w1", limit=5) == []


async def test_claim__same_priority_oldest_first(store: Store) -> None:
    await register(store, "w1", [spec("wf")])
    old = await create(store, "wf")

    def backdate(conn: sa.Connection) -> None:
        conn.execute(
            tables.executions.update()
            .where(tables.executions.c.id == old.id)
            .values(available_at=old.available_at - 10_000)
        )

    await store.write(backdate)
    await create(store, "wf")
    [task] = await claim(store, "w1", limit=1)
    assert task.execution_id == old.id


async def test_claim__bumps_epoch_and_attempt(store: Store) -> None:
    await register(store, "w1", [spec("wf")])
    ex = await create(store, "wf", payload_json='{"x": 1}', state_json='{"s": 1}')
    assert (ex.attempt, ex.status) == (0, "queued")

    [task] = await claim(store, "w1")
    assert (task.epoch, task.attempt) == (1, 1)
    assert task.payload == {"x": 1}
    assert task.has_state and task.state == {"s": 1}
    row = await get(store, ex.id)
    assert (row.status, row.worker_id, row.attempt) == ("running", "w1", 1)
    assert row.started_at is not None

    assert await one(store, ReleaseOp(ex.id, 1)) == OK
    [task] = await claim(store, "w1")
    assert (task.epoch, task.attempt) == (2, 2)
    row = await get(store, ex.id)
    assert row.attempt == 2
    assert [a.outcome for a in row.attempts] == ["released"]


async def test_claim__sets_code_fingerprint_then_flags_code_changed(store: Store) -> None:
    await register(store, "w-old", [spec("wf", fingerprint="fp-A")])
    ex = await create(store, "wf")
    assert (await get(store, ex.id)).code_fingerprint is None

    [task] = await claim(store, "w-old")
    assert task.code_fingerprint == "fp-A"
    row = await get(store, ex.id)
    assert (row.code_fingerprint, row.code_changed) == ("fp-A", False)

    # Re-claimed by a worker running the same code: nothing changed.
    assert await one(store, ReleaseOp(ex.id, task.epoch)) == OK
    [task] = await claim(store, "w-old")
    row = await get(store, ex.id)
    assert (row.code_fingerprint, row.code_changed) == ("fp-A", False)

    # Re-claimed by a worker running other code: the first fingerprint stays, flagged.
    await register(store, "w-new", [spec("wf", fingerprint="fp-B")])
    assert await one(store, ReleaseOp(ex.id, task.epoch)) == OK
    [task] = await claim(store, "w-new")
    assert task.code_fingerprint == "fp-A"
    row = await get(store, ex.id)
    assert (row.code_fingerprint, row.code_changed) == ("fp-A", True)


async def test_claim__reclaimed_execution_ships_history_in_seq_order(store: Store) -> None:
    await register(store, "w1", [spec("wf")])
    ex = await create(store, "wf")
    [task] = await claim(store, "w1")
    assert task.history == []

    # Keys deliberately not in seq order alphabetically, recorded out of order.
    outcome = await store.apply_batch(
        [
            RecordStepOp(ex.id, task.epoch, step("zeta", 3, {"v": 3})),
            RecordStepOp(ex.id, task.epoch, step("alpha", 1, {"v": 1})),
            RecordStepOp(ex.id, task.epoch, step("mid", 2, [1, 2])),
        ]
    )
    assert outcome.results == [OK, OK, OK]

    await store.worker_gone("w1", orchestrator_id=ORCH)
    await register(store, "w1", [spec("wf")])
    [task] = await claim(store, "w1")
    assert task.epoch == 2
    assert [(s.key, s.seq, s.output) for s in task.history] == [
        ("alpha", 1, {"v": 1}),
        ("mid", 2, [1, 2]),
        ("zeta", 3, {"v": 3}),
    ]
    assert [s.key for s in await store.list_steps(ex.id)] == ["alpha", "mid", "zeta"]


# ---------------------------------------------------------------------------- fencing


async def _reclaimed(store: Store) -> tuple[str, int, int]:
    """An execution claimed twice: (id, stale epoch, current epoch)."""
    await register(store, "w1", [spec("wf")])
    ex = await create(store, "wf")
    [old] = await claim(store, "w1")
    await store.worker_gone("w1", orchestrator_id=ORCH)
    await register(store, "w2", [spec("wf")])
    [new] = await claim(store, "w2")
    assert new.epoch > old.epoch
    return ex.id, old.epoch, new.epoch


async def test_fencing__stale_record_step_returns_stale_and_writes_nothing(store: Store) -> None:
    eid, stale, _ = await _reclaimed(store)
    result = await one(store, RecordStepOp(eid, stale, step("s", 1, "late")))
    assert result == STALE
    assert await store.list_steps(eid) == []


async def test_fencing__stale_complete_returns_stale_and_writes_nothing(store: Store) -> None:
    eid, stale, current = await _reclaimed(store)
    before = await get(store, eid)
    assert await one(store, CompleteOp(eid, stale, '"late"', '{"s": 1}')) == STALE
    after = await get(store, eid)
    assert (after.status, after.result, after.state, after.worker_id) == (
        "running",
        None,
        None,
        "w2",
    )
    assert after.completed_at is None
    assert after.updated_at == before.updated_at
    # The current lease still can.
    assert await one(store, CompleteOp(eid, current, '"done"')) == OK
    assert (await get(store, eid)).status == "completed"


async def test_fencing__stale_fail_and_release_change_nothing(store: Store) -> None:
    eid, stale, _ = await _reclaimed(store)
    assert await one(store, FailOp(eid, stale, BOOM, retryable=False)) == STALE
    assert await one(store, ReleaseOp(eid, stale)) == STALE
    row = await get(store, eid)
    assert (row.status, row.worker_id, row.failed_attempts) == ("running", "w2", 0)


async def test_fencing__write_for_unknown_execution_is_stale(store: Store) -> None:
    assert await one(store, RecordStepOp("nope", 1, step("s", 1))) == STALE
    assert await one(store, CompleteOp("nope", 1, "null")) == STALE


async def test_fencing__resent_record_step_is_ok_and_not_duplicated(store: Store) -> None:
    await register(store, "w1", [spec("wf")])
    ex = await create(store, "wf")
    [task] = await claim(store, "w1")
    op = RecordStepOp(ex.id, task.epoch, step("charge", 1, {"paid": True}))

    assert await one(store, op) == OK
    assert await one(store, op) == OK  # re-sent after a lost ack
    # ... also twice in the same batch
    assert (await store.apply_batch([op, op])).results == [OK, OK]
    # A re-send never overwrites what was recorded first.
    changed = RecordStepOp(ex.id, task.epoch, step("charge", 1, {"paid": "twice"}))
    assert await one(store, changed) == OK

    steps = await store.list_steps(ex.id)
    assert [(s.key, s.output) for s in steps] == [("charge", {"paid": True})]


async def test_fencing__resent_complete_is_ok_and_applied_once(store: Store) -> None:
    await register(store, "w1", [spec("wf")])
    ex = await create(store, "wf")
    [task] = await claim(store, "w1")

    outcome = await store.apply_batch([CompleteOp(ex.id, task.epoch, '"first"')])
    assert outcome.results == [OK]
    assert [(t.execution_id, t.status) for t in outcome.transitions] == [(ex.id, "completed")]
    done = await get(store, ex.id)

    outcome = await store.apply_batch([CompleteOp(ex.id, task.epoch, '"second"')])
    assert outcome.results == [OK]
    assert outcome.transitions == []  # no second transition
    again = await get(store, ex.id)
    assert again.result == "first"
    assert again.completed_at == done.completed_at
    assert (again.status, again.worker_id) == ("completed", None)


async def test_complete__records_result_state_and_run_time_and_notifies(
    store: Store, db_url: str
) -> None:
    # On PostgreSQL a lone top-level completion is one statement; it must do all the
    # general path does: the fields, the transition, and both NOTIFYs.
    await register(store, "w1", [spec("wf")])
    ex = await create(store, "wf", queue="q1")
    [task] = await claim(store, "w1")
    listener = None
    if db_url.startswith("postgresql"):
        import psycopg

        listener = psycopg.connect(db_url, autocommit=True)
        listener.execute("LISTEN polos_done_v1")
        listener.execute("LISTEN polos_work_v1")
    try:
        outcome = await store.apply_batch([CompleteOp(ex.id, task.epoch, '"r"', '{"s": 2}')])
        assert outcome.results == [OK]
        assert [(t.execution_id, t.status) for t in outcome.transitions] == [(ex.id, "completed")]
        if listener is not None:
            got = {(n.channel, n.payload) for n in listener.notifies(timeout=2, stop_after=2)}
            assert got == {("polos_done_v1", ex.id), ("polos_work_v1", "")}
    finally:
        if listener is not None:
            listener.close()
    done = await get(store, ex.id)
    assert (done.status, done.result, done.state, done.worker_id) == (
        "completed",
        "r",
        {"s": 2},
        None,
    )
    assert done.completed_at is not None and done.completed_at >= (done.started_at or 0)


async def test_fencing__duplicate_complete_in_one_batch_applies_once(store: Store) -> None:
    await register(store, "w1", [spec("wf")])
    ex = await create(store, "wf")
    [task] = await claim(store, "w1")
    outcome = await store.apply_batch(
        [CompleteOp(ex.id, task.epoch, '"a"'), CompleteOp(ex.id, task.epoch, '"b"')]
    )
    assert outcome.results == [OK, OK]
    assert len(outcome.transitions) == 1
    assert (await get(store, ex.id)).result == "a"


# ---------------------------------------------------------------------------- fail and retry


async def test_fail__retry_policy_backs_off_then_fails_on_last_attempt(store: Store) -> None:
    policy = RetryPolicySpec(
        max_attempts=3, initial_interval_ms=10_000, backoff_coefficient=2.0, jitter=0.0
    )
    await register(store, "w1", [spec("wf", retry=policy)])
    ex = await create(store, "wf")

    for failure, delay in ((1, 10_000), (2, 20_000)):
        [task] = await claim(store, "w1")
        assert task.attempt == failure
        # A completed step survives the retry; a failed one is deleted so it runs again.
        assert (
            await store.apply_batch(
                [
                    RecordStepOp(ex.id, task.epoch, step(f"ok-{failure}", failure * 2 - 1, 1)),
                    RecordStepOp(
                        ex.id, task.epoch, step(f"bad-{failure}", failure * 2, error=BOOM)
                    ),
                ]
            )
        ).results == [OK, OK]
        before = now_ms()
        outcome = await store.apply_batch([FailOp(ex.id, task.epoch, BOOM, retryable=True)])
        after = now_ms()
        assert outcome.results == [OK]
        assert outcome.transitions == []

        row = await get(store, ex.id)
        assert row.status == "queued"
        assert row.worker_id is None
        assert row.failed_attempts == failure
        assert row.error is None
        assert before + delay <= row.available_at <= after + delay
        # Not claimable during the backoff.
        assert await claim(store, "w1") == []
        assert [s.key for s in await store.list_steps(ex.id)] == [
            f"ok-{n}" for n in range(1, failure + 1)
        ]
        await make_available_now(store, ex.id)

    [task] = await claim(store, "w1")
    assert task.attempt == 3
    assert [s.key for s in task.history] == ["ok-1", "ok-2"]
    last = ErrorInfo(type="RuntimeError", message="third time")
    outcome = await store.apply_batch([FailOp(ex.id, task.epoch, last, retryable=True)])
    assert outcome.results == [OK]
    assert [(t.execution_id, t.status) for t in outcome.transitions] == [(ex.id, "failed")]

    row = await get(store, ex.id)
    assert row.status == "failed"
    assert row.error == last
    assert row.failed_attempts == 3
    assert row.completed_at is not None
    assert row.worker_id is None
    assert [(a.attempt, a.outcome, a.worker_id) for a in row.attempts] == [
        (1, "failed", "w1"),
        (2, "failed", "w1"),
        (3, "failed", "w1"),
    ]
    assert [a.error for a in row.attempts] == [BOOM, BOOM, last]
    assert await claim(store, "w1") == []


async def test_fail__resent_fail_is_ok_and_counted_once(store: Store) -> None:
    policy = RetryPolicySpec(max_attempts=3, initial_interval_ms=10_000, jitter=0.0)
    await register(store, "w1", [spec("wf", retry=policy)])
    ex = await create(store, "wf")
    [task] = await claim(store, "w1")
    op = FailOp(ex.id, task.epoch, BOOM, retryable=True)
    assert await one(store, op) == OK
    assert await one(store, op) == OK
    row = await get(store, ex.id)
    assert (row.status, row.failed_attempts, len(row.attempts)) == ("queued", 1, 1)


async def test_fail__non_retryable_ends_failed_at_once(store: Store) -> None:
    policy = RetryPolicySpec(max_attempts=3, initial_interval_ms=0)
    await register(store, "w1", [spec("wf", retry=policy)])
    ex = await create(store, "wf")
    [task] = await claim(store, "w1")
    outcome = await store.apply_batch(
        [FailOp(ex.id, task.epoch, BOOM, retryable=False, state_json='{"at": "end"}')]
    )
    assert outcome.results == [OK]
    assert [t.status for t in outcome.transitions] == ["failed"]
    row = await get(store, ex.id)
    assert (row.status, row.error, row.failed_attempts) == ("failed", BOOM, 1)
    assert row.state == {"at": "end"}
    assert [a.outcome for a in row.attempts] == ["failed"]
    assert await claim(store, "w1") == []


async def test_fail__default_policy_is_one_attempt(store: Store) -> None:
    await register(store, "w1", [spec("wf")])
    ex = await create(store, "wf")
    [task] = await claim(store, "w1")
    assert await one(store, FailOp(ex.id, task.epoch, BOOM, retryable=True)) == OK
    assert (await get(store, ex.id)).status == "failed"


# ---------------------------------------------------------------------------- worker loss


async def test_worker_gone__requeues_running_executions_as_crashed(store: Store) -> None:
    await register(store, "w1", [spec("wf")])
    a = await create(store, "wf")
    b = await create(store, "wf")
    queued = await create(store, "wf")
    tasks = await claim(store, "w1", limit=2)
    claimed = {t.execution_id for t in tasks}
    assert len(claimed) == 2
    left = ({a.id, b.id, queued.id} - claimed).pop()

    transitions = await store.worker_gone("w1", orchestrator_id=ORCH)
    assert sorted((t.execution_id, t.status) for t in transitions) == sorted(
        (eid, "queued") for eid in claimed
    )
    for eid in claimed:
        row = await get(store, eid)
        assert (row.status, row.worker_id, row.crashed_attempts) == ("queued", None, 1)
        assert [(x.attempt, x.outcome, x.worker_id) for x in row.attempts] == [(1, "crashed", "w1")]
        assert row.available_at <= now_ms()  # first crash: retried at once
    untouched = await get(store, left)
    assert (untouched.status, untouched.attempts) == ("queued", [])
    [worker] = await store.list_workers(P)
    assert worker.status == "gone"

    # Gone twice is a no-op.
    assert await store.worker_gone("w1", orchestrator_id=ORCH) == []


async def test_worker_gone__graceful_releases_without_counting_a_crash(store: Store) -> None:
    await register(store, "w1", [spec("wf")])
    ex = await create(store, "wf")
    await claim(store, "w1")
    transitions = await store.worker_gone("w1", graceful=True)
    assert [(t.execution_id, t.status) for t in transitions] == [(ex.id, "queued")]
    row = await get(store, ex.id)
    assert (row.status, row.crashed_attempts) == ("queued", 0)
    assert [a.outcome for a in row.attempts] == ["released"]


async def test_worker_gone__fails_after_max_recovery_attempts(store: Store) -> None:
    await register(store, "w1", [spec("wf", max_recovery_attempts=2)])
    ex = await create(store, "wf")

    await claim(store, "w1")
    transitions = await store.worker_gone("w1", orchestrator_id=ORCH)
    assert [(t.execution_id, t.status) for t in transitions] == [(ex.id, "queued")]

    await register(store, "w1", [spec("wf", max_recovery_attempts=2)])
    [task] = await claim(store, "w1")
    assert task.attempt == 2
    transitions = await store.worker_gone("w1", orchestrator_id=ORCH)
    assert [(t.execution_id, t.status) for t in transitions] == [(ex.id, "failed")]

    row = await get(store, ex.id)
    assert row.status == "failed"
    assert row.crashed_attempts == 2
    assert row.error is not None
    assert row.error.type == "polos.MaxRecoveryAttemptsExceeded"
    assert row.completed_at is not None
    assert [a.outcome for a in row.attempts] == ["crashed", "crashed"]
    await register(store, "w1", [spec("wf", max_recovery_attempts=2)])
    assert await claim(store, "w1") == []


async def test_worker_gone__other_orchestrator_id_does_nothing(store: Store) -> None:
    await register(store, "w1", [spec("wf")], orchestrator_id="orch-new")
    ex = await create(store, "wf")
    [task] = await claim(store, "w1")

    assert await store.worker_gone("w1", orchestrator_id="orch-old") == []
    row = await get(store, ex.id)
    assert (row.status, row.worker_id) == ("running", "w1")
    assert row.attempts == []
    [worker] = await store.list_workers(P)
    assert worker.status == "connected"
    # The lease still holds.
    assert await one(store, RecordStepOp(ex.id, task.epoch, step("s", 1))) == OK


async def test_register_worker__abandons_unowned_leases_and_requeues_unlisted(
    store: Store,
) -> None:
    await register(store, "w1", [spec("wf")])
    await register(store, "w2", [spec("wf")])
    kept = await create(store, "wf")
    moved = await create(store, "wf")
    lost = await create(store, "wf")
    finished = await create(store, "wf")
    tasks = {t.execution_id: t for t in await claim(store, "w1")}
    assert set(tasks) == {kept.id, moved.id, lost.id, finished.id}

    # 'moved' went to w2 meanwhile; 'finished' completed.
    assert await one(store, ReleaseOp(moved.id, tasks[moved.id].epoch)) == OK
    [w2_task] = await claim(store, "w2")
    assert w2_task.execution_id == moved.id
    assert await one(store, CompleteOp(finished.id, tasks[finished.id].epoch, "1")) == OK

    # w1 reconnects, saying it still runs kept, moved and finished (not 'lost').
    abandon = await register(
        store,
        "w1",
        [spec("wf")],
        active={
            kept.id: tasks[kept.id].epoch,
            moved.id: tasks[moved.id].epoch,
            finished.id: tasks[finished.id].epoch,
            "never-existed": 1,
        },
    )
    assert sorted(abandon) == sorted([moved.id, finished.id, "never-existed"])

    row = await get(store, kept.id)
    assert (row.status, row.worker_id, row.attempts) == ("running", "w1", [])
    row = await get(store, moved.id)
    assert (row.status, row.worker_id) == ("running", "w2")
    row = await get(store, lost.id)
    assert (row.status, row.worker_id, row.crashed_attempts) == ("queued", None, 1)
    assert [(a.outcome, a.worker_id) for a in row.attempts] == [("crashed", "w1")]
    assert (await get(store, finished.id)).status == "completed"
    # The lease of the kept execution is intact.
    assert await one(store, CompleteOp(kept.id, tasks[kept.id].epoch, "2")) == OK


async def test_register_worker__replaces_the_workflows_it_serves(store: Store) -> None:
    await register(store, "w1", [spec("a"), spec("b")])
    await register(store, "w1", [spec("b", fingerprint="fp-2")])
    a = await create(store, "a")  # still registered in the project
    b = await create(store, "b")
    assert [t.execution_id for t in await claim(store, "w1")] == [b.id]
    assert (await get(store, a.id)).status == "queued"
    [worker] = await store.list_workers(P)
    assert worker.workflows == ["b"]
    assert {w.id: w.fingerprint for w in await store.list_workflows(P)} == {
        "a": "fp-1",
        "b": "fp-2",
    }


# ---------------------------------------------------------------------------- cancel


async def test_cancel__queued_execution_becomes_cancelled(store: Store) -> None:
    await register(store, "w1", [spec("wf")])
    ex = await create(store, "wf")
    outcome = await store.apply_batch([CancelOp(P, ex.id, "alice")])
    [result] = outcome.results
    assert isinstance(result, Cancelled)
    assert result.changed is True
    assert result.worker_id is None
    assert result.execution is not None
    assert (result.execution.status, result.execution.cancelled_by) == ("cancelled", "alice")
    assert [(t.execution_id, t.status) for t in outcome.transitions] == [(ex.id, "cancelled")]
    row = await get(store, ex.id)
    assert (row.status, row.cancelled_by) == ("cancelled", "alice")
    assert row.completed_at is not None
    assert await claim(store, "w1") == []


async def test_cancel__running_execution_names_its_worker_and_fences_it(store: Store) -> None:
    await register(store, "w1", [spec("wf")])
    ex = await create(store, "wf")
    [task] = await claim(store, "w1")
    result = await one(store, CancelOp(P, ex.id, "bob"))
    assert isinstance(result, Cancelled)
    assert (result.changed, result.worker_id) == (True, "w1")
    row = await get(store, ex.id)
    assert (row.status, row.cancelled_by, row.worker_id) == ("cancelled", "bob", None)
    # The worker's late writes are refused.
    assert await one(store, RecordStepOp(ex.id, task.epoch, step("s", 1))) == STALE
    assert await one(store, CompleteOp(ex.id, task.epoch, "1")) == STALE
    assert await store.list_steps(ex.id) == []
    assert (await get(store, ex.id)).status == "cancelled"


async def test_cancel__finished_execution_is_unchanged(store: Store) -> None:
    await register(store, "w1", [spec("wf")])
    ex = await create(store, "wf")
    [task] = await claim(store, "w1")
    assert await one(store, CompleteOp(ex.id, task.epoch, '"ok"')) == OK
    done = await get(store, ex.id)

    outcome = await store.apply_batch([CancelOp(P, ex.id, "carol")])
    [result] = outcome.results
    assert isinstance(result, Cancelled)
    assert result.changed is False
    assert outcome.transitions == []
    assert result.execution == done
    assert await get(store, ex.id) == done
    # Cancelling twice: the second call changes nothing either.
    other = await create(store, "wf")
    await one(store, CancelOp(P, other.id, "x"))
    second = await one(store, CancelOp(P, other.id, "y"))
    assert isinstance(second, Cancelled) and second.changed is False
    assert (await get(store, other.id)).cancelled_by == "x"


async def test_cancel__unknown_or_other_project_execution_is_not_found(store: Store) -> None:
    await register(store, "w1", [spec("wf")])
    ex = await create(store, "wf")
    await store.ensure_project("other", "Other")
    for op in (CancelOp(P, "nope", "x"), CancelOp("other", ex.id, "x")):
        result = await one(store, op)
        assert isinstance(result, Cancelled)
        assert (result.execution, result.changed) == (None, False)
    assert (await get(store, ex.id)).status == "queued"


# ---------------------------------------------------------------------------- listing


async def test_list_executions__cursor_walks_every_page_once(store: Store) -> None:
    await register(store, "w1", [spec("wf")])
    # One batch shares one timestamp: the cursor must break ties by id.
    outcome = await store.apply_batch([CreateExecution(P, "wf", str(i)) for i in range(12)])
    ids = [r.execution.id for r in outcome.results]  # type: ignore[union-attr]
    for i in range(11):
        ids.append((await create(store, "wf", payload_json=str(100 + i))).id)
    assert len(set(ids)) == 23

    seen: list[Execution] = []
    cursor = None
    pages = 0
    while True:
        items, cursor = await store.list_executions(P, limit=5, cursor=cursor)
        pages += 1
        assert len(items) <= 5
        seen.extend(items)
        if cursor is None:
            break
        assert len(items) == 5
        assert pages < 50
    assert pages == 5
    assert len(seen) == len(set(e.id for e in seen)) == 23
    assert {e.id for e in seen} == set(ids)
    keys = [(e.created_at, e.id) for e in seen]
    assert keys == sorted(keys, reverse=True)  # newest first


async def test_list_executions__exact_page_multiple_has_no_empty_last_page(store: Store) -> None:
    await register(store, "w1", [spec("wf")])
    await store.apply_batch([CreateExecution(P, "wf", "1") for _ in range(4)])
    first, cursor = await store.list_executions(P, limit=2)
    assert len(first) == 2 and cursor is not None
    second, cursor = await store.list_executions(P, limit=2, cursor=cursor)
    assert len(second) == 2 and cursor is None


async def test_list_executions__time_range_id_prefix_tree_and_top_level(store: Store) -> None:
    await register(store, "w1", [spec("wf")])
    root = await create(store, "wf", execution_id="root-aaa")
    child = await create(
        store,
        "wf",
        execution_id="child-aab",
        parent_id=root.id,
        root_id=root.id,
        parent_step_key="s",
    )
    grandchild = await create(
        store,
        "wf",
        execution_id="child-abc",
        parent_id=child.id,
        root_id=root.id,
        parent_step_key="s",
    )
    other = await create(store, "wf", execution_id="other-1")

    async def ids(**filters: Any) -> list[str]:
        items, _ = await store.list_executions(P, limit=10, **filters)
        return sorted(e.id for e in items)

    assert await ids(id_prefix="child-a") == ["child-aab", "child-abc"]
    assert await ids(id_prefix="child-aab") == ["child-aab"]
    assert await ids(id_prefix="zzz") == []
    assert await ids(parent_id=root.id) == ["child-aab"]
    assert await ids(root_id=root.id) == ["child-aab", "child-abc", "root-aaa"]
    assert await ids(top_level=True) == ["other-1", "root-aaa"]
    times = sorted({root.created_at, child.created_at, grandchild.created_at, other.created_at})
    everything = await ids(created_after=times[0], created_before=times[-1] + 1)
    assert everything == ["child-aab", "child-abc", "other-1", "root-aaa"]
    assert await ids(created_after=times[-1] + 1) == []
    assert await ids(created_before=times[0]) == []


async def test_list_executions__filters_by_status_and_workflow(store: Store) -> None:
    await register(store, "w1", [spec("a")])
    await register(store, "w2", [spec("b")])
    a_running = await create(store, "a")
    await claim(store, "w1")
    a_queued = await create(store, "a")
    b_queued = await create(store, "b")
    b_cancelled = await create(store, "b")
    await one(store, CancelOp(P, b_cancelled.id, "test"))
    await store.ensure_project("other", "Other")

    async def ids(**kwargs: Any) -> set[str]:
        items, cursor = await store.list_executions(P, **kwargs)
        assert cursor is None
        return {e.id for e in items}

    assert await ids() == {a_running.id, a_queued.id, b_queued.id, b_cancelled.id}
    assert await ids(statuses=["queued"]) == {a_queued.id, b_queued.id}
    assert await ids(statuses=["running", "cancelled"]) == {a_running.id, b_cancelled.id}
    assert await ids(workflow_id="a") == {a_running.id, a_queued.id}
    assert await ids(workflow_id="b", statuses=["queued"]) == {b_queued.id}
    assert await ids(workflow_id="nope") == set()
    assert await ids(statuses=["completed"]) == set()
    items, _ = await store.list_executions("other")
    assert items == []


# ---------------------------------------------------------------------------- batches


async def test_apply_batch__failing_op_is_isolated_from_the_others(store: Store) -> None:
    await register(store, "w1", [spec("wf")])
    running = await create(store, "wf")
    [task] = await claim(store, "w1")

    bad = CreateExecution(P, "wf", "{this is not json")
    ops: list[WriteOp] = [
        CreateExecution(P, "wf", '{"good": 1}'),
        bad,
        RecordStepOp(running.id, task.epoch, step("s1", 1, "v")),
        CreateExecution(P, "wf", '{"good": 2}', idempotency_key="g2"),
    ]
    outcome = await store.apply_batch(ops)
    assert len(outcome.results) == 4
    good1, err, recorded, good2 = outcome.results
    assert isinstance(err, Exception)
    assert isinstance(good1, Created) and good1.created
    assert isinstance(good2, Created) and good2.created
    assert recorded == OK

    items, _ = await store.list_executions(P)
    assert sorted(str(e.payload) for e in items if e.id != running.id) == [
        "{'good': 1}",
        "{'good': 2}",
    ]
    assert [s.key for s in await store.list_steps(running.id)] == ["s1"]


async def test_write_batcher__groups_concurrent_submits(store: Store) -> None:
    await register(store, "w1", [spec("wf")])
    batcher = WriteBatcher(store, max_batch=512)
    batcher.start()
    try:
        results = await asyncio.gather(
            *(batcher.submit(CreateExecution(P, "wf", str(i))) for i in range(200))
        )
    finally:
        await batcher.stop()
    assert all(isinstance(r, Created) and r.created for r in results)
    assert len({r.execution.id for r in results}) == 200  # type: ignore[union-attr]
    assert [r.execution.payload for r in results] == list(range(200))  # type: ignore[union-attr]
    assert batcher.ops == 200
    assert 1 <= batcher.batches < 200


async def test_write_batcher__failing_op_raises_only_for_its_caller(store: Store) -> None:
    await register(store, "w1", [spec("wf")])
    batcher = WriteBatcher(store)
    batcher.start()
    try:
        results = await asyncio.gather(
            batcher.submit(CreateExecution(P, "wf", "1")),
            batcher.submit(CreateExecution(P, "wf", "{broken")),
            batcher.submit(CreateExecution(P, "wf", "3")),
            return_exceptions=True,
        )
    finally:
        await batcher.stop()
    ok1, err, ok3 = results
    assert isinstance(err, Exception)
    assert isinstance(ok1, Created) and isinstance(ok3, Created)
    items, _ = await store.list_executions(P)
    assert sorted(e.payload for e in items) == [1, 3]


async def test_store__reopening_the_database_keeps_data(db_url: str) -> None:
    first = await open_store(db_url)
    try:
        await first.ensure_project(P, "Default project")
        await register(first, "w1", [spec("wf")])
        ex = await create(first, "wf")
    finally:
        await first.close()
    second = await open_store(db_url)
    try:
        await second.ensure_project(P, "Default project")  # idempotent
        assert (await get(second, ex.id)).status == "queued"
        assert await second.project_exists(P)
        assert not await second.project_exists("nope")

        def count(conn: sa.Connection) -> int:
            return int(conn.scalar(sa.select(sa.func.count()).select_from(tables.projects)) or 0)

        assert await second.read(count) == 1
    finally:
        await second.close()
