"""Creating executions: from the API, from event triggers, and as children of a step."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from polos.protocol import ChildSpec, Execution, ExecutionStatus

from . import _tables as t
from ._codec import dumps, execution_from_row, loads, new_id
from ._ops import Created, CreateExecution, Rejected

NO_WORKFLOW = "no_workflow"
"""Result of :class:`CreateExecution` when the workflow id was never registered."""

_INSERT_EXECUTION = sa.text(
    "INSERT INTO executions (id, project_id, workflow_id, status, payload, state, retry, "
    "max_recovery_attempts, parent_id, root_id, parent_step_key, parent_index, idempotency_key, "
    "queue, concurrency_key, priority, trigger_event, created_at, updated_at, available_at) "
    "VALUES (:id, :project_id, :workflow_id, 'queued', :payload, :state, :retry, "
    ":max_recovery_attempts, :parent_id, :root_id, :parent_step_key, :parent_index, "
    ":idempotency_key, :queue, :concurrency_key, :priority, :trigger_event, :now, :now, :now)"
)


def create_many(
    conn: Connection, creates: list[tuple[int, CreateExecution]], now: int
) -> dict[int, Created | str]:
    """Create executions: one lookup per kind of fact, one multi-row insert.

    Returns, per index, the :class:`Created` execution (``created=False`` when its
    idempotency key or given id already exists) or :data:`NO_WORKFLOW`.
    """
    results: dict[int, Created | str] = {}
    ex = t.executions
    # Idempotency keys already used (per project), and keys repeated inside this batch.
    keyed = {(op.project_id, op.idempotency_key) for _, op in creates if op.idempotency_key}
    existing: dict[tuple[str, str], Execution] = {}
    for project_id in {p for p, _ in keyed}:
        keys = [k for p, k in keyed if p == project_id]
        rows = conn.execute(
            sa.select(ex).where(ex.c.project_id == project_id, ex.c.idempotency_key.in_(keys))
        ).mappings()
        for row in rows.all():
            existing[(project_id, row["idempotency_key"])] = execution_from_row(row)
    given_ids = [op.execution_id for _, op in creates if op.execution_id]
    existing_ids: dict[str, Execution] = {}
    if given_ids:
        rows = conn.execute(sa.select(ex).where(ex.c.id.in_(given_ids))).mappings()
        existing_ids = {r["id"]: execution_from_row(r) for r in rows.all()}
    wanted = {(op.project_id, op.workflow_id) for _, op in creates}
    policies = {
        (r.project_id, r.id): (r.retry, r.max_recovery_attempts)
        for r in conn.execute(
            sa.select(
                t.workflows.c.project_id,
                t.workflows.c.id,
                t.workflows.c.retry,
                t.workflows.c.max_recovery_attempts,
            ).where(t.workflows.c.id.in_(sorted({w for _, w in wanted})))
        ).all()
    }
    rows_to_insert: list[dict[str, Any]] = []
    for index, op in creates:
        key = (op.project_id, op.idempotency_key) if op.idempotency_key else None
        if key is not None and key in existing:
            results[index] = Created(existing[key], created=False)
            continue
        if op.execution_id is not None and op.execution_id in existing_ids:
            results[index] = Created(existing_ids[op.execution_id], created=False)
            continue
        policy = policies.get((op.project_id, op.workflow_id))
        if policy is None:
            results[index] = NO_WORKFLOW
            continue
        execution_id = op.execution_id or new_id()
        root_id = op.root_id or execution_id
        rows_to_insert.append(
            {
                "id": execution_id,
                "project_id": op.project_id,
                "workflow_id": op.workflow_id,
                "payload": op.payload_json,
                "state": op.state_json,
                "retry": policy[0],
                "max_recovery_attempts": policy[1],
                "parent_id": op.parent_id,
                "root_id": root_id,
                "parent_step_key": op.parent_step_key,
                "parent_index": op.parent_index,
                "idempotency_key": op.idempotency_key,
                "queue": op.queue,
                "concurrency_key": op.concurrency_key,
                "priority": op.priority,
                "trigger_event": op.trigger_event_json,
                "now": now,
            }
        )
        execution = Execution(
            id=execution_id,
            project_id=op.project_id,
            workflow_id=op.workflow_id,
            status=ExecutionStatus.QUEUED,
            payload=loads(op.payload_json),
            state=loads(op.state_json),
            attempt=0,
            parent_id=op.parent_id,
            root_id=root_id,
            parent_step_key=op.parent_step_key,
            trigger_event=loads(op.trigger_event_json),
            idempotency_key=op.idempotency_key,
            queue=op.queue,
            concurrency_key=op.concurrency_key,
            priority=op.priority,
            created_at=now,
            updated_at=now,
            available_at=now,
        )
        if key is not None:
            existing[key] = execution  # a repeat later in this batch gets this one
        results[index] = Created(execution, created=True)
    if rows_to_insert:
        conn.execute(_INSERT_EXECUTION, rows_to_insert)
    return results


def create_children(
    conn: Connection,
    parent: Any,
    step_key: str,
    children: Sequence[ChildSpec],
    now: int,
) -> Rejected | None:
    """Start the children of one parent step (ids given by the SDK, so a re-send is a no-op).

    ``parent`` is the parent's row (id, project_id, root_id). Nothing is created
    when one of the workflows is not registered: the whole step is rejected.
    """
    if not children:
        return None
    project_id = parent["project_id"]
    names = sorted({c.workflow_id for c in children})
    known = set(
        conn.scalars(
            sa.select(t.workflows.c.id).where(
                t.workflows.c.project_id == project_id, t.workflows.c.id.in_(names)
            )
        ).all()
    )
    unknown = [n for n in names if n not in known]
    if unknown:
        return Rejected(
            f"cannot start child workflow(s) {', '.join(repr(n) for n in unknown[:10])}: not "
            f"registered in project {project_id!r} (start a worker that serves them)"
        )
    parent_id = parent["id"]
    ops = [
        (
            i,
            CreateExecution(
                project_id=project_id,
                workflow_id=c.workflow_id,
                payload_json=dumps(c.payload),
                queue=c.queue,
                concurrency_key=c.concurrency_key,
                priority=c.priority,
                state_json=dumps(c.initial_state) if c.has_state else None,
                parent_id=parent_id,
                root_id=parent["root_id"] or parent_id,
                parent_step_key=step_key,
                execution_id=c.execution_id,
                parent_index=c.index,
            ),
        )
        for i, c in enumerate(children)
    ]
    create_many(conn, ops, now)
    return None
