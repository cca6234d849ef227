"""Retention: deleting old finished executions (with their steps and waits) and old events.

Each call is one short write transaction that first selects at most ``limit`` row ids
(oldest first, ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so several orchestrators
pruning at once take disjoint rows) and then deletes by id. Nothing here loops: the
orchestrator's retention loop (or ``polos-server prune``) calls these until a call
selects fewer than ``limit`` rows, pausing between calls so that the hot writers get
the database (SQLite has one writer at a time).

What may go:

* an execution that is ``completed``, ``failed`` or ``cancelled``, finished before
  the cutoff, and whose whole tree (every execution with the same ``root_id``, and the
  root itself) is finished before the cutoff too: a finished child of a parent that
  still runs (or finished recently) stays, since the parent may replay and read it;
* its step log and any wait row left behind (deleted explicitly, not through
  ``ON DELETE CASCADE``, so that the counts are right and foreign keys may be off);
* an event created before the event cutoff, unless an open wait on its topic may
  still receive it (``seq > after_seq``) or a trigger of its topic has not consumed
  it yet (``seq > cursor``: a batch still being gathered).

Topics (their ``last_seq``), triggers, schedules, workers, queues and sessions are
never touched. Spans are derived from executions and steps, so they go with them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from . import _tables as t

if TYPE_CHECKING:
    from ._store import Store

_FINISHED = "('completed', 'failed', 'cancelled')"

# An execution is prunable when it and its whole tree finished before the cutoff. The
# tree is found through ix_executions_root; the root's own row is checked by primary key
# too (a root created without root_id is not in its tree's root_id range).
_PRUNABLE_EXECUTIONS = (
    "FROM executions e "
    "WHERE e.completed_at IS NOT NULL AND e.completed_at < :cutoff "
    "AND e.completed_at >= :after "
    f"AND e.status IN {_FINISHED} "
    "AND NOT EXISTS (SELECT 1 FROM executions x "
    "WHERE x.root_id = COALESCE(e.root_id, e.id) "
    f"AND (x.status NOT IN {_FINISHED} OR x.completed_at IS NULL "
    "OR x.completed_at >= :cutoff)) "
    "AND NOT EXISTS (SELECT 1 FROM executions r "
    "WHERE r.id = COALESCE(e.root_id, e.id) "
    f"AND (r.status NOT IN {_FINISHED} OR r.completed_at IS NULL "
    "OR r.completed_at >= :cutoff))"
)

# An event is prunable when it is old and nothing still needs it: no open wait on its
# topic registered before it (the wait reads events with seq > after_seq), and no
# trigger of its topic whose cursor is behind it (a batch still gathering events).
_PRUNABLE_EVENTS = (
    "FROM events e "
    "WHERE e.created_at < :cutoff AND e.created_at >= :after "
    "AND NOT EXISTS (SELECT 1 FROM waits w "
    "WHERE w.project_id = e.project_id AND w.topic IS NOT NULL AND w.topic = e.topic "
    "AND w.after_seq IS NOT NULL AND w.after_seq < e.seq) "
    "AND NOT EXISTS (SELECT 1 FROM triggers tr "
    'WHERE tr.project_id = e.project_id AND tr.topic = e.topic AND tr."cursor" < e.seq)'
)


@dataclass(frozen=True, slots=True)
class ExecutionsPruned:
    """What one batch of :func:`prune_executions` did.

    Attributes:
        selected: executions selected (and deleted); fewer than the limit means the
            batch reached the end of what may be pruned now.
        executions: execution rows deleted.
        steps: step rows deleted.
        waits: wait rows deleted.
        resume_after: pass as ``after`` to the next batch (``completed_at`` of the last
            execution deleted), so that it does not scan again past rows that must stay.
    """

    selected: int
    executions: int
    steps: int
    waits: int
    resume_after: int


@dataclass(frozen=True, slots=True)
class EventsPruned:
    """What one batch of :func:`prune_events` did (see :class:`ExecutionsPruned`)."""

    selected: int
    events: int
    resume_after: int


@dataclass(frozen=True, slots=True)
class Prunable:
    """How many rows retention would delete now (``polos-server prune --dry-run``)."""

    executions: int
    steps: int
    waits: int
    events: int


async def prune_executions(
    store: Store, *, before: int, limit: int, after: int = 0
) -> ExecutionsPruned:
    """Delete up to ``limit`` prunable executions that finished before ``before`` (epoch ms).

    ``after``: only look at executions that finished at or after it (a resume point).
    """
    select = sa.text(
        f"SELECT e.id, e.completed_at {_PRUNABLE_EXECUTIONS} "
        f"ORDER BY e.completed_at LIMIT :n{_lock(store)}"
    )

    def go(conn: Connection) -> ExecutionsPruned:
        rows = conn.execute(select, {"cutoff": before, "after": after, "n": limit}).all()
        if not rows:
            return ExecutionsPruned(0, 0, 0, 0, after)
        ids = [r.id for r in rows]
        steps = conn.execute(t.steps.delete().where(t.steps.c.execution_id.in_(ids))).rowcount
        waits = conn.execute(t.waits.delete().where(t.waits.c.execution_id.in_(ids))).rowcount
        executions = conn.execute(t.executions.delete().where(t.executions.c.id.in_(ids))).rowcount
        return ExecutionsPruned(len(ids), executions, steps, waits, int(rows[-1].completed_at))

    return await store.write(go)


async def prune_events(store: Store, *, before: int, limit: int, after: int = 0) -> EventsPruned:
    """Delete up to ``limit`` prunable events created before ``before`` (epoch ms)."""
    select = sa.text(
        f"SELECT e.id, e.created_at {_PRUNABLE_EVENTS} ORDER BY e.created_at LIMIT :n{_lock(store)}"
    )

    def go(conn: Connection) -> EventsPruned:
        rows = conn.execute(select, {"cutoff": before, "after": after, "n": limit}).all()
        if not rows:
            return EventsPruned(0, 0, after)
        ids = [r.id for r in rows]
        deleted = conn.execute(t.events.delete().where(t.events.c.id.in_(ids))).rowcount
        return EventsPruned(len(ids), deleted, int(rows[-1].created_at))

    return await store.write(go)


async def count_prunable(
    store: Store, *, executions_before: int | None, events_before: int | None
) -> Prunable:
    """How many rows :func:`prune_executions` / :func:`prune_events` would delete now.

    ``None`` cutoffs count nothing for that kind. Counts the whole backlog (a full
    scan of what is older than the cutoff): meant for the CLI, not for a loop.
    """

    def go(conn: Connection) -> Prunable:
        executions = steps = waits = events = 0
        if executions_before is not None:
            params: dict[str, Any] = {"cutoff": executions_before, "after": 0}
            ids = f"SELECT e.id {_PRUNABLE_EXECUTIONS}"
            executions = _count(conn, f"SELECT COUNT(*) {_PRUNABLE_EXECUTIONS}", params)
            steps = _count(
                conn, f"SELECT COUNT(*) FROM steps WHERE execution_id IN ({ids})", params
            )
            waits = _count(
                conn, f"SELECT COUNT(*) FROM waits WHERE execution_id IN ({ids})", params
            )
        if events_before is not None:
            events = _count(
                conn,
                f"SELECT COUNT(*) {_PRUNABLE_EVENTS}",
                {"cutoff": events_before, "after": 0},
            )
        return Prunable(executions, steps, waits, events)

    return await store.read(go)


def _lock(store: Store) -> str:
    # PostgreSQL: lock the selected rows (not those the sub-selects read), skipping rows
    # another pruner holds. SQLite: its write transaction already excludes other writers.
    return " FOR UPDATE OF e SKIP LOCKED" if store.dialect.skip_locked else ""


def _count(conn: Connection, sql: str, params: dict[str, Any]) -> int:
    return int(conn.execute(sa.text(sql), params).scalar_one())
