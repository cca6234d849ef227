"""Running a failed or cancelled execution again, from where it stopped (the UI's Retry)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from polos.protocol import AttemptInfo, ErrorInfo, Execution

from . import _tables as t
from ._codec import dumps, execution_from_row, loads
from ._lifecycle import QUEUED

RETRYABLE = ("failed", "cancelled")


@dataclass(frozen=True, slots=True)
class Retried:
    """The execution after a retry request, and why it was refused (``None``: queued again)."""

    execution: Execution | None
    refused: str | None = None
    dropped_steps: tuple[str, ...] = ()
    """Keys of the failed steps that were forgotten, so that they run again."""


def retry(conn: Connection, project_id: str, execution_id: str, by: str, now: int) -> Retried:
    """Queue a failed or cancelled top-level execution again, keeping its step log.

    Completed steps replay from the log (they do not run again); like every claim, the
    retry starts from the execution's initial state, and the replayed steps restore the
    state snapshots they recorded. The failed steps at the end of the log (recorded with
    an error after the last successful step: the step that failed the run) are forgotten
    so that they run again; a failed step the workflow caught and went on from stays
    recorded, so that replay takes the same path. The retry policy, the crash budget and
    the run timeout start afresh.
    """
    ex = t.executions
    row = (
        conn.execute(
            sa.select(ex)
            .where(ex.c.id == execution_id, ex.c.project_id == project_id)
            # the row lock holds off a concurrent retry or cancel (PostgreSQL)
            .with_for_update()
        )
        .mappings()
        .first()
    )
    if row is None:
        return Retried(execution=None, refused="not found")
    if row["status"] not in RETRYABLE:
        return Retried(
            execution=execution_from_row(row),
            refused=f"execution {execution_id} is {row['status']}: only failed or cancelled "
            "executions can be retried",
        )
    if row["parent_id"] is not None:
        return Retried(
            execution=execution_from_row(row),
            refused=f"execution {execution_id} is a child of {row['parent_id']}: retry the "
            "top-level execution (its parent has seen this one's outcome)",
        )
    dropped = _drop_trailing_failures(conn, execution_id)
    attempts: list[Any] = loads(row["attempts"]) or []
    previous = loads(row["error"]) or {}
    attempts.append(
        AttemptInfo(
            attempt=row["attempt"],
            outcome="retried",
            ended_at=now,
            error=ErrorInfo(
                type="polos.Retried",
                message=f"retried by {by}; it had ended {row['status']}: "
                f"{previous.get('message', 'no error recorded')}",
            ),
        ).model_dump(mode="json", exclude_none=True)
    )
    values: dict[str, Any] = {
        "status": QUEUED,
        "error": None,
        "completed_at": None,
        "cancelled_by": None,
        "worker_id": None,
        "deadline_at": None,
        "claimed_at": None,
        "failed_attempts": 0,
        "crashed_attempts": 0,
        "run_elapsed_ms": 0,
        "attempts": dumps(attempts),
        "available_at": now,
        "updated_at": now,
    }
    conn.execute(ex.update().where(ex.c.id == execution_id).values(**values))
    merged = dict(row)
    merged.update(values)
    return Retried(execution=execution_from_row(merged), dropped_steps=tuple(dropped))


def _drop_trailing_failures(conn: Connection, execution_id: str) -> list[str]:
    st = t.steps
    rows = conn.execute(
        sa.select(st.c.key, st.c.seq, st.c.error).where(st.c.execution_id == execution_id)
    ).all()
    last_ok = max((r.seq for r in rows if r.error is None), default=-1)
    failed = [r.key for r in rows if r.error is not None and r.seq > last_ok]
    if failed:
        conn.execute(st.delete().where(st.c.execution_id == execution_id, st.c.key.in_(failed)))
    return failed
