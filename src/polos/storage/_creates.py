"""Creating executions: from the API, from event triggers, and as children of a step."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from polos.protocol import ChildSpec, Execution, ExecutionStatus

from . import _tables as t
from ._codec import dumps, execution_from_row, loads, new_id
from ._ops import Created, CreateExecution, Rejected

NO_WORKFLOW = "no_workflow"
"""Result of :class:`CreateExecution` when the workflow id was never registered."""

# ``initial_state`` starts equal to ``state``: steps overwrite ``state`` with their snapshots,
# claims hand the worker ``initial_state`` (a replay starts from it; see ``_claims``).
_INSERT_EXECUTION = sa.text(
    "INSERT INTO executions (id, project_id, workflow_id, status, payload, state, "
    "initial_state, initial_state_recorded, retry, "
    "max_recovery_attempts, parent_id, root_id, parent_step_key, parent_index, idempotency_key, "
    "queue, concurrency_key, priority, trigger_event, run_timeout_ms, timeout_counts_waits, "
    "schedule_id, created_at, updated_at, available_at) "
    "VALUES (:id, :project_id, :workflow_id, 'queued', :payload, :state, :state, TRUE, :retry, "
    ":max_recovery_attempts, :parent_id, :root_id, :parent_step_key, :parent_index, "
    ":idempotency_key, :queue, :concurrency_key, :priority, :trigger_event, :run_timeout_ms, "
    ":timeout_counts_waits, :schedule_id, :now, :now, :now)"
)
# A queue named at invoke time that nobody declared: created without limits, so that
# it shows in the queue listing and can be given limits later.
_ENSURE_QUEUE = sa.text(
    "INSERT INTO queues (project_id, name, created_at, updated_at) "
    "VALUES (:project_id, :name, :now, :now) ON CONFLICT DO NOTHING"
)


@dataclass(frozen=True, slots=True)
class _WorkflowDefaults:
    """What a new execution takes from its workflow's registration."""

    retry: str
    max_recovery_attempts: int
    queue: str | None
    run_timeout_ms: int | None
    timeout_counts_waits: bool

    @classmethod
    def from_row(
        cls, retry: str, max_recovery_attempts: int, options_json: str
    ) -> _WorkflowDefaults:
        options = loads(options_json) or {}
        queue = options.get("queue")
        timeout = options.get("timeout_seconds")
        return cls(
            retry=retry,
            max_recovery_attempts=max_recovery_attempts,
            queue=queue.get("name") if isinstance(queue, dict) else None,
            run_timeout_ms=int(timeout * 1000) if isinstance(timeout, int | float) else None,
            timeout_counts_waits=bool(options.get("timeout_counts_waits", False)),
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
        (r.project_id, r.id): _WorkflowDefaults.from_row(
            r.retry, r.max_recovery_attempts, r.options
        )
        for r in conn.execute(
            sa.select(
                t.workflows.c.project_id,
                t.workflows.c.id,
                t.workflows.c.retry,
                t.workflows.c.max_recovery_attempts,
                t.workflows.c.options,
            ).where(t.workflows.c.id.in_(sorted({w for _, w in wanted})))
        ).all()
    }
    new_queues: set[tuple[str, str]] = set()
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
        queue = op.queue or policy.queue
        if queue is None and op.concurrency_key is not None:
            queue = op.workflow_id  # a concurrency key needs a queue: the workflow's own
        if queue is not None and queue != policy.queue:  # declared queues exist already
            new_queues.add((op.project_id, queue))
        run_timeout_ms = (
            op.run_timeout_ms if op.run_timeout_ms is not None else policy.run_timeout_ms
        )
        counts_waits = (
            op.timeout_counts_waits
            if op.timeout_counts_waits is not None
            else policy.timeout_counts_waits
        )
        rows_to_insert.append(
            {
                "id": execution_id,
                "project_id": op.project_id,
                "workflow_id": op.workflow_id,
                "payload": op.payload_json,
                "state": op.state_json,
                "retry": policy.retry,
                "max_recovery_attempts": policy.max_recovery_attempts,
                "parent_id": op.parent_id,
                "root_id": root_id,
                "parent_step_key": op.parent_step_key,
                "parent_index": op.parent_index,
                "idempotency_key": op.idempotency_key,
                "queue": queue,
                "concurrency_key": op.concurrency_key,
                "priority": op.priority,
                "trigger_event": op.trigger_event_json,
                "run_timeout_ms": run_timeout_ms,
                "timeout_counts_waits": counts_waits,
                "schedule_id": op.schedule_id,
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
            queue=queue,
            concurrency_key=op.concurrency_key,
            priority=op.priority,
            created_at=now,
            updated_at=now,
            available_at=now,
            run_timeout_ms=run_timeout_ms,
            timeout_counts_waits=bool(counts_waits),
        )
        if key is not None:
            existing[key] = execution  # a repeat later in this batch gets this one
        results[index] = Created(execution, created=True)
    if rows_to_insert:
        for project_id, name in sorted(new_queues):
            conn.execute(_ENSURE_QUEUE, {"project_id": project_id, "name": name, "now": now})
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
                run_timeout_ms=c.run_timeout_ms,
            ),
        )
        for i, c in enumerate(children)
    ]
    create_many(conn, ops, now)
    return None
