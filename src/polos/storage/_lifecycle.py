"""An attempt's life: claiming queued executions, failing attempts, cancelling trees."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from polos.protocol import (
    AttemptInfo,
    ErrorInfo,
    ExecutionStatus,
    RetryPolicySpec,
    StepRecord,
    Task,
)

from . import _tables as t
from ._codec import dumps, execution_from_row, loads, step_from_row
from ._ops import Cancelled, CancelOp, ClaimOp, FailOp
from ._waits import WaitWrites

QUEUED = ExecutionStatus.QUEUED.value
RUNNING = ExecutionStatus.RUNNING.value
ACTIVE_STATUSES = (QUEUED, RUNNING, ExecutionStatus.WAITING.value)


def attempt_stopped(now: int, *, finished: bool = False) -> dict[str, Any]:
    """Column values for a running attempt that stops (parked, requeued, failed, finished).

    Its running time (``now - claimed_at``) is added to ``run_elapsed_ms``, which the
    next claim subtracts from the run timeout. The deadline is cleared, except for an
    unfinished execution whose waits count against its timeout: its deadline is
    absolute and stays, so that it times out while queued or waiting too.
    """
    ex = t.executions
    return {
        "run_elapsed_ms": ex.c.run_elapsed_ms + now - sa.func.coalesce(ex.c.claimed_at, now),
        "claimed_at": None,
        "deadline_at": None
        if finished
        else sa.case((ex.c.timeout_counts_waits, ex.c.deadline_at), else_=sa.null()),
    }


def claim(
    conn: Connection,
    statement: sa.TextClause,
    by_ids: sa.TextClause,
    picked: Sequence[str],
    op: ClaimOp,
    now: int,
) -> list[Task]:
    """Claim up to ``op.limit`` queued executions for a worker; the tasks carry their history.

    ``picked`` are executions of limited queues already chosen within their limits
    (:meth:`FlowWrites.pick`); the rest of the worker's room goes to executions
    without a queue (``statement``).
    """
    rows: list[Any] = []
    if picked:
        rows = list(
            conn.execute(by_ids, {"w": op.worker_id, "now": now, "ids": list(picked)})
            .mappings()
            .all()
        )
    room = op.limit - len(rows)
    if room > 0:
        rows.extend(
            conn.execute(statement, {"w": op.worker_id, "p": op.project_id, "now": now, "n": room})
            .mappings()
            .all()
        )
    if not rows:
        return []
    history: dict[str, list[StepRecord]] = {}
    replays = [r["id"] for r in rows if r["epoch"] > 1]
    if replays:
        step_rows = conn.execute(
            sa.select(t.steps)
            .where(t.steps.c.execution_id.in_(replays))
            .order_by(t.steps.c.execution_id, t.steps.c.seq)
        )
        for s in step_rows.mappings().all():
            history.setdefault(s["execution_id"], []).append(step_from_row(s))
    return [
        Task(
            execution_id=r["id"],
            workflow_id=r["workflow_id"],
            epoch=r["epoch"],
            attempt=r["attempt"],
            payload=loads(r["payload"]),
            has_state=r["state"] is not None,
            state=loads(r["state"]),
            history=history.get(r["id"], []),
            parent_id=r["parent_id"],
            root_id=r["root_id"],
            created_at=r["created_at"],
            code_fingerprint=r["code_fingerprint"],
            trigger=loads(r["trigger_event"]),
        )
        for r in sorted(rows, key=lambda r: r["id"])
    ]


def fail(conn: Connection, op: FailOp, now: int) -> str:
    """Record a failed attempt: queue a retry (per the policy) or end the execution failed."""
    ex = t.executions
    row = (
        (
            conn.execute(
                sa.select(
                    ex.c.attempt,
                    ex.c.worker_id,
                    ex.c.failed_attempts,
                    ex.c.retry,
                    ex.c.attempts,
                ).where(ex.c.id == op.execution_id)
            )
        )
        .mappings()
        .one()
    )
    policy = RetryPolicySpec.model_validate_json(row["retry"])
    failed = row["failed_attempts"] + 1
    attempts = loads(row["attempts"]) or []
    attempts.append(
        AttemptInfo(
            attempt=row["attempt"],
            outcome="failed",
            worker_id=row["worker_id"],
            ended_at=now,
            error=op.error,
        ).model_dump(mode="json", exclude_none=True)
    )
    values: dict[str, Any] = {
        "failed_attempts": failed,
        "attempts": dumps(attempts),
        "worker_id": None,
        "updated_at": now,
        **attempt_stopped(now),
    }
    if op.state_json is not None:
        values["state"] = op.state_json
    if op.retryable and failed < policy.max_attempts:
        # A workflow retry re-runs the steps that failed; completed steps stay recorded.
        conn.execute(
            t.steps.delete().where(
                t.steps.c.execution_id == op.execution_id, t.steps.c.error.is_not(None)
            )
        )
        values.update(status=QUEUED, available_at=now + policy.delay_ms(failed, op.unit_random))
        status = QUEUED
    else:
        values.update(
            status="failed", error=op.error.model_dump_json(), completed_at=now, deadline_at=None
        )
        status = "failed"
    conn.execute(
        ex.update().where(ex.c.id == op.execution_id, ex.c.epoch == op.epoch).values(**values)
    )
    return status


def cancel(conn: Connection, op: CancelOp, now: int) -> Cancelled:
    """Cancel an unfinished execution, its unfinished descendants, and their waits."""
    ex = t.executions
    row = (
        (
            conn.execute(
                sa.select(ex).where(ex.c.id == op.execution_id, ex.c.project_id == op.project_id)
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        return Cancelled(execution=None, changed=False)
    if row["status"] not in ACTIVE_STATUSES:
        return Cancelled(execution=execution_from_row(row), changed=False)
    values = {
        "status": "cancelled",
        "completed_at": now,
        "updated_at": now,
        "worker_id": None,
        "deadline_at": None,
        "cancelled_by": op.cancelled_by,
        "error": ErrorInfo(
            type="polos.ExecutionCancelled", message=f"cancelled by {op.cancelled_by}"
        ).model_dump_json(),
    }
    conn.execute(ex.update().where(ex.c.id == op.execution_id).values(**values))
    descendants = cancel_descendants(
        conn,
        op.execution_id,
        now,
        cancelled_by=f"ancestor {op.execution_id} cancelled by {op.cancelled_by}",
        message=f"cancelled with its ancestor {op.execution_id}",
    )
    WaitWrites.drop(conn, [op.execution_id, *(d for d, _ in descendants)])
    merged = dict(row)
    merged.update(values)
    return Cancelled(
        execution=execution_from_row(merged),
        changed=True,
        worker_id=row["worker_id"],
        descendants=descendants,
    )


def cancel_descendants(
    conn: Connection,
    root: str,
    now: int,
    *,
    cancelled_by: str,
    message: str,
    max_depth: int = 100,
) -> list[tuple[str, str | None]]:
    """Cancel every unfinished execution below ``root``: (id, worker id) of each."""
    ex = t.executions
    cancelled: list[tuple[str, str | None]] = []
    frontier = [root]
    for _ in range(max_depth):
        rows = conn.execute(
            sa.select(ex.c.id, ex.c.status, ex.c.worker_id).where(ex.c.parent_id.in_(frontier))
        ).all()
        if not rows:
            break
        active = [r for r in rows if r.status in ACTIVE_STATUSES]
        if active:
            conn.execute(
                ex.update()
                .where(ex.c.id.in_([r.id for r in active]), ex.c.status.in_(ACTIVE_STATUSES))
                .values(
                    status="cancelled",
                    completed_at=now,
                    updated_at=now,
                    worker_id=None,
                    deadline_at=None,
                    cancelled_by=cancelled_by,
                    error=ErrorInfo(
                        type="polos.ExecutionCancelled", message=message
                    ).model_dump_json(),
                )
            )
            cancelled.extend((r.id, r.worker_id) for r in active)
        frontier = [r.id for r in rows]
    return cancelled
