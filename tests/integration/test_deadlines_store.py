"""Run-timeout bookkeeping in the storage layer, on SQLite and PostgreSQL.

The clock columns (``claimed_at``, ``run_elapsed_ms``, ``deadline_at``) are checked
after each kind of attempt ending; times are moved into the past by updating the
rows directly instead of sleeping.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import sqlalchemy as sa

from polos.protocol import (
    DEFAULT_PROJECT_ID,
    ChildSpec,
    RetryPolicySpec,
    StepKind,
    WaitKind,
    WaitSpec,
    WorkflowSpec,
    now_ms,
)
from polos.storage import (
    OK,
    CancelOp,
    CompleteOp,
    FailOp,
    Fired,
    FireDueOp,
    RecordStepOp,
    Store,
    WaitOp,
    open_store,
)
from polos.storage import _tables as tables
from tests.integration.test_store import BOOM, claim, create, get, one, register, spec, step

P = DEFAULT_PROJECT_ID
ex = tables.executions


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    s = await open_store(db_url)
    try:
        await s.ensure_project(P, "Default project")
        await register(
            s,
            "w1",
            [spec("wf"), spec("retried", retry=RetryPolicySpec(max_attempts=2)), spec("kid")],
        )
        yield s
    finally:
        await s.close()


async def clock(store: Store, execution_id: str) -> dict[str, Any]:
    def go(conn: sa.Connection) -> dict[str, Any]:
        row = conn.execute(
            sa.select(
                ex.c.claimed_at, ex.c.run_elapsed_ms, ex.c.deadline_at, ex.c.started_at
            ).where(ex.c.id == execution_id)
        ).one()
        return dict(row._mapping)

    return await store.read(go)


async def shift(store: Store, execution_id: str, **minus_ms: int) -> None:
    """Move time columns of an execution ``ms`` into the past."""

    def go(conn: sa.Connection) -> None:
        conn.execute(
            ex.update()
            .where(ex.c.id == execution_id)
            .values({name: ex.c[name] - ms for name, ms in minus_ms.items()})
        )

    await store.write(go)


def suspend(execution_id: str, epoch: int, seq: int = 1) -> WaitOp:
    return WaitOp(
        execution_id=execution_id,
        epoch=epoch,
        key="approval",
        seq=seq,
        step_kind=StepKind.SUSPEND,
        started_at=now_ms(),
        spec=WaitSpec(kind=WaitKind.SUSPEND),
    )


async def test_clock__runs_only_while_an_attempt_runs(store: Store) -> None:
    e = await create(store, "wf", run_timeout_ms=10_000)
    before = now_ms()
    [task] = await claim(store, "w1")
    c = await clock(store, e.id)
    assert c["run_elapsed_ms"] == 0 and c["claimed_at"] >= before
    assert c["deadline_at"] == c["claimed_at"] + 10_000

    # 3 s of running, then the worker dies: the 3 s count, the clock stops.
    await shift(store, e.id, claimed_at=3000)
    await store.worker_gone("w1")
    c = await clock(store, e.id)
    assert (
        3000 <= c["run_elapsed_ms"] < 3500 and c["deadline_at"] is None and c["claimed_at"] is None
    )

    # The next attempt gets what is left; 1 s more of it, then it parks at a suspend.
    await register(store, "w1", [spec("wf")])
    [task] = await claim(store, "w1")
    c = await clock(store, e.id)
    assert c["deadline_at"] == c["claimed_at"] + 10_000 - c["run_elapsed_ms"]
    await shift(store, e.id, claimed_at=1000)
    assert await one(store, suspend(e.id, task.epoch)) == OK
    c = await clock(store, e.id)
    assert 4000 <= c["run_elapsed_ms"] < 4600 and c["deadline_at"] is None
    assert (await get(store, e.id)).deadline_at is None


async def test_clock__a_failed_attempt_counts_and_completion_clears_the_deadline(
    store: Store,
) -> None:
    e = await create(store, "retried", run_timeout_ms=60_000)
    [task] = await claim(store, "w1")
    await shift(store, e.id, claimed_at=2000)
    assert await one(store, FailOp(e.id, task.epoch, BOOM, retryable=True)) == OK
    c = await clock(store, e.id)
    assert (await get(store, e.id)).status == "queued"
    assert 2000 <= c["run_elapsed_ms"] < 2500 and c["deadline_at"] is None

    await shift(store, e.id, available_at=10_000)
    [task] = await claim(store, "w1")
    assert (await clock(store, e.id))["deadline_at"] is not None
    assert await one(store, CompleteOp(e.id, task.epoch, "1")) == OK
    c = await clock(store, e.id)
    assert c["deadline_at"] is None and c["claimed_at"] is None


async def test_clock__counting_waits_keeps_the_deadline_from_the_first_start(store: Store) -> None:
    e = await create(store, "wf", run_timeout_ms=10_000, timeout_counts_waits=True)
    [task] = await claim(store, "w1")
    c = await clock(store, e.id)
    assert c["deadline_at"] == c["started_at"] + 10_000
    assert await one(store, suspend(e.id, task.epoch)) == OK
    assert (await clock(store, e.id))["deadline_at"] == c["deadline_at"]
    # It stays while the execution waits, and the sweep ends it there.
    await shift(store, e.id, deadline_at=20_000)
    fired = await one(store, FireDueOp())
    assert isinstance(fired, Fired) and (fired.timed_out, fired.stop) == (1, [])
    final = await get(store, e.id)
    assert (final.status, final.deadline_at) == ("failed", None)
    assert final.error is not None and final.error.type == "polos.WorkflowTimeoutError"
    assert final.attempts == []


async def test_clock__no_timeout_means_no_deadline(store: Store) -> None:
    e = await create(store, "wf")
    await claim(store, "w1")
    assert (await clock(store, e.id))["deadline_at"] is None


async def test_sweep__a_timed_out_tree_fails_the_root_and_cancels_the_rest(store: Store) -> None:
    parent = await create(store, "wf", run_timeout_ms=60_000)
    [task] = await claim(store, "w1")
    kid = ChildSpec(execution_id="kid-1", workflow_id="kid", run_timeout_ms=60_000)
    started = await one(
        store, RecordStepOp(parent.id, task.epoch, step("spawn", 1), children=(kid,))
    )
    assert started == OK
    [kid_task] = await claim(store, "w1")
    assert (await get(store, "kid-1")).run_timeout_ms == 60_000
    # Both are past their deadline; the parent's comes first.
    await shift(store, parent.id, deadline_at=61_000)
    await shift(store, "kid-1", deadline_at=60_500)

    fired = await one(store, FireDueOp())

    assert isinstance(fired, Fired) and fired.timed_out == 1
    assert sorted(fired.stop) == sorted(
        [
            ("w1", parent.id, "run timeout of 60 s exceeded"),
            ("w1", "kid-1", f"ancestor {parent.id} timed out"),
        ]
    )
    root = await get(store, parent.id)
    assert (root.status, root.worker_id, root.deadline_at) == ("failed", None, None)
    assert [(a.attempt, a.outcome, a.worker_id) for a in root.attempts] == [(1, "timed_out", "w1")]
    child = await get(store, "kid-1")
    assert (child.status, child.cancelled_by) == ("cancelled", f"ancestor {parent.id} timed out")
    # Late writes of both attempts are refused.
    assert await one(store, CompleteOp(parent.id, task.epoch, "1")) == "stale"
    assert await one(store, CompleteOp("kid-1", kid_task.epoch, "1")) == "stale"
    assert await one(store, FireDueOp()) == Fired(waits=0, started=0)


async def test_sweep__an_execution_written_in_the_same_batch_is_left_to_the_next_sweep(
    store: Store,
) -> None:
    e = await create(store, "wf", run_timeout_ms=1_000)
    [task] = await claim(store, "w1")
    await shift(store, e.id, deadline_at=5_000)

    outcome = await store.apply_batch([CompleteOp(e.id, task.epoch, '"done"'), FireDueOp()])

    assert outcome.results == [OK, Fired(waits=0, started=0)]
    assert (await get(store, e.id)).status == "completed"


async def test_cancel__clears_the_deadline_and_records_who(store: Store) -> None:
    e = await create(store, "wf", run_timeout_ms=1_000)
    await claim(store, "w1")
    result = await one(store, CancelOp(P, e.id, "alice: stop"))
    assert getattr(result, "changed", False)
    final = await get(store, e.id)
    assert (final.status, final.cancelled_by, final.deadline_at) == (
        "cancelled",
        "alice: stop",
        None,
    )
    assert final.completed_at is not None


async def test_create__the_invocation_overrides_the_workflows_timeout(store: Store) -> None:
    timed = WorkflowSpec(
        id="timed",
        fingerprint="fp",
        retry=RetryPolicySpec(),
        options={"timeout_seconds": 30, "timeout_counts_waits": True},
    )
    await register(store, "w2", [timed])
    defaults = await create(store, "timed")
    given = await create(store, "timed", run_timeout_ms=1500, timeout_counts_waits=False)

    assert (defaults.run_timeout_ms, defaults.timeout_counts_waits) == (30_000, True)
    assert (given.run_timeout_ms, given.timeout_counts_waits) == (1500, False)
    stored = await get(store, given.id)
    assert (stored.run_timeout_ms, stored.timeout_counts_waits) == (1500, False)
