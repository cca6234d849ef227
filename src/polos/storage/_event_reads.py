"""Read queries on events, waits and timers (run by :class:`~polos.storage.Store`)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from polos.protocol import Event, WaitInfo

from . import _tables as t
from ._codec import event_from_row, wait_from_row


def list_events(
    conn: Connection, project_id: str, topic: str, after: int, limit: int
) -> list[Event]:
    """Events of a topic with ``seq > after``, in order (served by the primary key)."""
    ev = t.events
    rows = conn.execute(
        sa.select(ev)
        .where(ev.c.project_id == project_id, ev.c.topic == topic, ev.c.seq > after)
        .order_by(ev.c.seq)
        .limit(limit)
    ).mappings()
    return [event_from_row(r) for r in rows.all()]


def last_seq(conn: Connection, project_id: str, topic: str) -> int:
    """The topic's last seq (0 if nothing was ever published on it)."""
    value = conn.scalar(
        sa.select(t.topics.c.last_seq).where(
            t.topics.c.project_id == project_id, t.topics.c.name == topic
        )
    )
    return int(value or 0)


def list_waits(
    conn: Connection,
    project_id: str,
    *,
    kind: str | None,
    workflow_id: str | None,
    limit: int,
    cursor: tuple[int, str, str] | None,
) -> tuple[list[WaitInfo], tuple[int, str, str] | None]:
    """A page of waits, oldest first, and the cursor of the next page."""
    w = t.waits
    query = sa.select(w).where(w.c.project_id == project_id)
    if kind is not None:
        query = query.where(w.c.kind == kind)
    if workflow_id is not None:
        query = query.where(w.c.workflow_id == workflow_id)
    if cursor is not None:
        created, eid, key = cursor
        query = query.where(
            sa.tuple_(w.c.created_at, w.c.execution_id, w.c.step_key) > (created, eid, key)
        )
    query = query.order_by(w.c.created_at, w.c.execution_id, w.c.step_key).limit(limit + 1)
    rows = conn.execute(query).mappings().all()
    items = [wait_from_row(r) for r in rows[:limit]]
    last = rows[limit - 1] if len(rows) > limit else None
    next_cursor = (
        (last["created_at"], last["execution_id"], last["step_key"]) if last is not None else None
    )
    return items, next_cursor


_NEXT_DUE = sa.select(
    sa.select(sa.func.min(t.waits.c.expires_at)).scalar_subquery(),
    sa.select(sa.func.min(t.triggers.c.batch_due_at)).scalar_subquery(),
    # an execution's run timeout (served by the partial index ix_executions_deadline)
    sa.select(sa.func.min(t.executions.c.deadline_at))
    .where(t.executions.c.deadline_at.is_not(None))
    .scalar_subquery(),
)


def next_due(conn: Connection) -> int | None:
    """The earliest wait expiry, trigger batch deadline or run timeout (epoch ms), if any."""
    row = conn.execute(_NEXT_DUE).one()
    due = [int(v) for v in row if v is not None]
    return min(due) if due else None
