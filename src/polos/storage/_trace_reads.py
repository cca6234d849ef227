"""Reads behind traces: a root execution's tree with its steps and open waits.

Nothing here writes: spans are derived (by the orchestrator) from what the step log
already holds, so tracing adds no statement to the step hot path.

The tree is every execution whose ``root_id`` is the root's, served by the index
``ix_executions_root`` (migration 0005): one range read, however deep the tree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from polos.protocol import Execution, StepRecord, WaitInfo

from . import _tables as t
from ._codec import execution_from_row, step_from_row, wait_from_row

if TYPE_CHECKING:
    from ._store import Store

MAX_TRACE_EXECUTIONS = 2000
"""The most executions one trace read returns (a bound on a response's size)."""


@dataclass
class TraceRows:
    """What spans are derived from: executions (parents first), their steps and open waits."""

    executions: list[Execution]
    steps: dict[str, list[StepRecord]] = field(default_factory=dict)
    """Recorded steps per execution id, in recording order."""
    waits: list[WaitInfo] = field(default_factory=list)
    truncated: bool = False
    """Whether the tree had more than :data:`MAX_TRACE_EXECUTIONS` executions."""


def _steps_of(conn: Connection, ids: Sequence[str]) -> dict[str, list[StepRecord]]:
    st = t.steps
    rows = conn.execute(
        sa.select(st).where(st.c.execution_id.in_(list(ids))).order_by(st.c.execution_id, st.c.seq)
    ).mappings()
    steps: dict[str, list[StepRecord]] = {i: [] for i in ids}
    for row in rows.all():
        steps[row["execution_id"]].append(step_from_row(row))
    return steps


def read_trace(conn: Connection, project_id: str, execution_id: str) -> TraceRows | None:
    """The whole tree of the root of ``execution_id`` (``None``: no such execution)."""
    ex = t.executions
    root = conn.execute(
        sa.select(sa.func.coalesce(ex.c.root_id, ex.c.id)).where(
            ex.c.id == execution_id, ex.c.project_id == project_id
        )
    ).scalar()
    if root is None:
        return None
    rows = (
        conn.execute(
            sa.select(ex)
            # Every execution is created with its root_id (a root's is its own id).
            .where(ex.c.root_id == root, ex.c.project_id == project_id)
            .order_by(ex.c.created_at, ex.c.id)
            .limit(MAX_TRACE_EXECUTIONS + 1)
        )
        .mappings()
        .all()
    )
    executions = _parents_first([execution_from_row(r) for r in rows[:MAX_TRACE_EXECUTIONS]])
    ids = [e.id for e in executions]
    waits = conn.execute(sa.select(t.waits).where(t.waits.c.execution_id.in_(ids))).mappings()
    return TraceRows(
        executions=executions,
        steps=_steps_of(conn, ids),
        waits=[wait_from_row(r) for r in waits.all()],
        truncated=len(rows) > MAX_TRACE_EXECUTIONS,
    )


def _parents_first(executions: list[Execution]) -> list[Execution]:
    """Order by depth in the tree, then creation: a parent always before its children."""
    parent_of = {e.id: e.parent_id for e in executions}
    depths: dict[str, int] = {}

    def depth(execution_id: str) -> int:
        chain = []
        current: str | None = execution_id
        while current is not None and current in parent_of and current not in depths:
            chain.append(current)
            current = parent_of[current]
        base = depths.get(current, -1) if current is not None else -1
        for offset, item in enumerate(reversed(chain), start=1):
            depths[item] = base + offset
        return depths[execution_id]

    return sorted(executions, key=lambda e: (depth(e.id), e.created_at, e.id))


def read_executions(conn: Connection, ids: Sequence[str]) -> TraceRows:
    """These executions (any project; unknown ids are left out) and their steps."""
    ex = t.executions
    rows = conn.execute(sa.select(ex).where(ex.c.id.in_(list(ids)))).mappings().all()
    executions = [execution_from_row(r) for r in rows]
    return TraceRows(executions=executions, steps=_steps_of(conn, [e.id for e in executions]))


async def trace_of(store: Store, project_id: str, execution_id: str) -> TraceRows | None:
    """The executions, steps and open waits of the trace ``execution_id`` belongs to.

    Four statements on one read connection, whatever the tree's size (up to
    :data:`MAX_TRACE_EXECUTIONS` executions). ``None`` when the project has no such
    execution.
    """
    return await store.read(lambda conn: read_trace(conn, project_id, execution_id))


async def executions_with_steps(store: Store, ids: Sequence[str]) -> TraceRows:
    """Finished executions to export: the rows and step logs of ``ids``, in two statements."""
    if not ids:
        return TraceRows(executions=[])
    return await store.read(lambda conn: read_executions(conn, ids))
