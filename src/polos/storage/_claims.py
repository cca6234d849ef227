"""Claiming queued executions for a worker: the statements, and the tasks they become.

A claim fills the worker's room from up to three sources, in this order:

1. executions of limited queues, chosen under the queues' locks: either by
   :meth:`FlowWrites.pick` (several queues, concurrency keys or rate limits) and
   then claimed by id, or, when the worker's only queue with work has at most a
   concurrency limit, by one ``UPDATE`` whose ``LIMIT`` is the free room
   (``limit - running``, counted in the same statement, after the lock);
2. executions without a queue, which need no lock.

Claims of one limited queue therefore cost as many statements as plain claims:
one to find (and lock) the queues with work, one ``UPDATE``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from polos.protocol import StepRecord, Task

from . import _tables as t
from ._codec import loads, step_from_row
from ._flow import FlowLocks, FlowWrites
from ._ops import ClaimOp

_FINGERPRINT = (
    "(SELECT ww.fingerprint FROM worker_workflows ww "
    "WHERE ww.worker_id = :w AND ww.workflow_id = executions.workflow_id)"
)
_SET = (
    "UPDATE executions SET status = 'running', worker_id = :w, epoch = epoch + 1, "
    "attempt = attempt + 1, updated_at = :now, started_at = COALESCE(started_at, :now), "
    "claimed_at = :now, deadline_at = CASE WHEN run_timeout_ms IS NULL THEN NULL "
    "WHEN timeout_counts_waits THEN COALESCE(started_at, :now) + run_timeout_ms "
    "ELSE :now + run_timeout_ms - run_elapsed_ms END, "
    f"code_changed = CASE WHEN code_fingerprint IS NOT NULL AND code_fingerprint <> {_FINGERPRINT} "
    "THEN TRUE ELSE code_changed END, "
    f"code_fingerprint = COALESCE(code_fingerprint, {_FINGERPRINT}) "
)
# The state a task starts from is the one the execution was created with, not the latest
# (``state``, overwritten by every step snapshot): a replay restores the recorded steps'
# snapshots in order, so code before the first of them must see the initial state. Rows
# created before migration 0007 (or by an older orchestrator) have no initial state
# recorded and start from the latest, as they used to.
_RETURNING = (
    "RETURNING id, workflow_id, epoch, attempt, payload, "
    "CASE WHEN initial_state_recorded THEN initial_state ELSE state END AS start_state, "
    "parent_id, root_id, created_at, code_fingerprint, trigger_event"
)
_SERVED = "workflow_id IN (SELECT workflow_id FROM worker_workflows WHERE worker_id = :w) "
_ORDER = "ORDER BY priority DESC, available_at, id LIMIT "
# The room a concurrency limit leaves, never negative (SQLite reads LIMIT -1 as "no limit").
_ROOM = (
    "(SELECT CASE WHEN count(*) >= :cap THEN 0 WHEN :cap - count(*) < :n THEN :cap - count(*) "
    "ELSE :n END FROM executions WHERE project_id = :p AND queue = :q AND status = 'running')"
)


class ClaimStatements:
    """The claim statements of one dialect, built once (SQLAlchemy caches their compiled form)."""

    def __init__(self, skip_locked: str) -> None:
        def update(where: str) -> sa.TextClause:
            return sa.text(_SET + where + _RETURNING)

        # Executions without a queue: no limit applies, no lock is needed.
        self.plain = update(
            "WHERE id IN (SELECT id FROM executions WHERE project_id = :p AND status = 'queued' "
            "AND queue IS NULL AND available_at <= :now AND "
            + _SERVED
            + _ORDER
            + ":n"
            + skip_locked
            + ") "
        )
        # Executions of limited queues, chosen by FlowWrites.pick under the queues' locks.
        self.by_ids = update("WHERE id IN :ids AND status = 'queued' ").bindparams(
            sa.bindparam("ids", expanding=True)
        )
        lone = (
            "WHERE id IN (SELECT id FROM executions WHERE project_id = :p AND queue = :q "
            "AND status = 'queued' AND available_at <= :now AND " + _SERVED + _ORDER
        )
        # The worker's only queue with work, locked by FlowWrites.prepare: with and
        # without a concurrency limit.
        self.lone_capped = update(lone + _ROOM + skip_locked + ") ")
        self.lone = update(lone + ":n" + skip_locked + ") ")


def claim(
    conn: Connection,
    statements: ClaimStatements,
    flow: FlowWrites,
    locks: FlowLocks,
    op: ClaimOp,
    now: int,
) -> list[Task]:
    """Claim up to ``op.limit`` queued executions for a worker; the tasks carry their history."""
    base = {"w": op.worker_id, "p": op.project_id, "now": now}
    rows: list[Any] = []
    lone = flow.lone_queue(locks, op.project_id, op.worker_id)
    if lone is not None:
        cap = lone["concurrency_limit"]
        statement = statements.lone if cap is None else statements.lone_capped
        params = {**base, "q": lone["name"], "n": op.limit}
        if cap is not None:
            params["cap"] = cap
        rows.extend(conn.execute(statement, params).mappings().all())
    else:
        picked = flow.pick(conn, locks, op.project_id, op.worker_id, op.limit, now)
        if picked:
            params = {"w": op.worker_id, "now": now, "ids": list(picked)}
            rows.extend(conn.execute(statements.by_ids, params).mappings().all())
    room = op.limit - len(rows)
    if room > 0:
        rows.extend(conn.execute(statements.plain, {**base, "n": room}).mappings().all())
    return _tasks(conn, rows) if rows else []


def _tasks(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> list[Task]:
    """Claimed rows as tasks; a replay (epoch > 1) carries the steps recorded so far."""
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
            has_state=r["start_state"] is not None,
            state=loads(r["start_state"]),
            history=history.get(r["id"], []),
            parent_id=r["parent_id"],
            root_id=r["root_id"],
            created_at=r["created_at"],
            code_fingerprint=r["code_fingerprint"],
            trigger=loads(r["trigger_event"]),
        )
        for r in sorted(rows, key=lambda r: r["id"])
    ]
