"""An attempt's life: failing attempts, cancelling trees."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from polos.protocol import (
    AttemptInfo,
    ErrorInfo,
    ExecutionStatus,
    RetryPolicySpec,
)

from . import _tables as t
from ._codec import dumps, execution_from_row, loads
from ._ops import Cancelled, CancelOp, FailOp
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
