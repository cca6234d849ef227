"""Workers and the workflows they serve: registration (the worker's half of a lease), listings."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from polos.errors import PolosError
from polos.protocol import RateLimitSpec, WorkerInfo, WorkflowInfo, WorkflowSpec

from . import _tables as t
from ._codec import dumps, loads
from ._flow import sync_flow
from ._lifecycle import RUNNING
from ._schedule_sync import sync_schedules

if TYPE_CHECKING:
    from ._writes import Writes


class WorkerIdInUse(PolosError):
    """A connecting worker named an id that a worker of another project holds."""


@dataclass(frozen=True, slots=True)
class Registration:
    """Who a connecting worker is."""

    project_id: str
    worker_id: str
    name: str
    hostname: str
    pid: int
    orchestrator_id: str
    max_concurrent: int


def register(
    conn: Connection,
    writes: Writes,
    worker: Registration,
    workflows: Sequence[WorkflowSpec],
    active: Mapping[str, int],
    rate_limits: Sequence[RateLimitSpec],
    lease_ms: int,
    now: int,
) -> list[str]:
    """Record a (re)connecting worker, its workflows, triggers, schedules and limits.

    Returns the executions of ``active`` it no longer owns; requeues (as crashed) those
    the database assigns to it that it did not list.

    Raises:
        WorkerIdInUse: a worker of another project has this id (taking it over would
            requeue that project's executions).
    """
    owner = conn.execute(
        sa.select(t.workers.c.project_id).where(t.workers.c.id == worker.worker_id)
    ).scalar()
    if owner is not None and owner != worker.project_id:
        raise WorkerIdInUse(f"worker id {worker.worker_id!r} is in use; pick another")
    for spec in workflows:
        values = {
            "kind": spec.kind,
            "fingerprint": spec.fingerprint,
            "description": spec.description,
            "options": dumps(spec.options),
            "retry": spec.retry.model_dump_json(),
            "max_recovery_attempts": spec.max_recovery_attempts,
            "last_seen_at": now,
        }
        updated = conn.execute(
            t.workflows.update()
            .where(t.workflows.c.project_id == worker.project_id, t.workflows.c.id == spec.id)
            .values(**values)
        )
        if updated.rowcount == 0:
            conn.execute(
                t.workflows.insert().values(
                    project_id=worker.project_id, id=spec.id, first_seen_at=now, **values
                )
            )
    worker_values = {
        "project_id": worker.project_id,
        "name": worker.name,
        "hostname": worker.hostname,
        "pid": worker.pid,
        "orchestrator_id": worker.orchestrator_id,
        "max_concurrent": worker.max_concurrent,
        "status": "connected",
        "last_heartbeat_at": now,
        "lease_expires_at": now + lease_ms,
    }
    updated = conn.execute(
        t.workers.update().where(t.workers.c.id == worker.worker_id).values(**worker_values)
    )
    if updated.rowcount == 0:
        conn.execute(
            t.workers.insert().values(id=worker.worker_id, connected_at=now, **worker_values)
        )
    conn.execute(
        t.worker_workflows.delete().where(t.worker_workflows.c.worker_id == worker.worker_id)
    )
    if workflows:
        conn.execute(
            t.worker_workflows.insert(),
            [
                {"worker_id": worker.worker_id, "workflow_id": s.id, "fingerprint": s.fingerprint}
                for s in workflows
            ],
        )
    writes.events.sync_triggers(conn, worker.project_id, workflows, now)
    sync_schedules(conn, worker.project_id, workflows, now)
    sync_flow(conn, worker.project_id, workflows, rate_limits, now)
    rows = (
        conn.execute(
            sa.select(t.executions.c.id, t.executions.c.epoch).where(
                t.executions.c.worker_id == worker.worker_id, t.executions.c.status == RUNNING
            )
        )
    ).all()
    owned = {r.id: r.epoch for r in rows}
    abandon = [eid for eid, epoch in active.items() if owned.get(eid) != epoch]
    # Assigned to this worker but not running there (or under another epoch): lost.
    lost = [eid for eid, epoch in owned.items() if active.get(eid) != epoch]
    if lost:
        writes.requeue(conn, lost, outcome="crashed", now=now)
    return abandon


def workers_of(conn: Connection, project_id: str) -> list[WorkerInfo]:
    """Known workers of a project, most recently connected first (at most 500)."""
    counts = conn.execute(
        sa.select(t.executions.c.worker_id, sa.func.count())
        .where(t.executions.c.project_id == project_id, t.executions.c.status == RUNNING)
        .group_by(t.executions.c.worker_id)
    )
    running: dict[str, int] = {wid: n for wid, n in counts.all()}
    wf_rows = (
        conn.execute(
            sa.select(t.worker_workflows.c.worker_id, t.worker_workflows.c.workflow_id)
            .join(t.workers, t.workers.c.id == t.worker_workflows.c.worker_id)
            .where(t.workers.c.project_id == project_id)
        )
    ).all()
    wfs: dict[str, list[str]] = {}
    for wid, wf in wf_rows:
        wfs.setdefault(wid, []).append(wf)
    rows = (
        conn.execute(
            sa.select(t.workers)
            .where(t.workers.c.project_id == project_id)
            .order_by(t.workers.c.connected_at.desc())
            .limit(500)
        )
    ).mappings()
    return [
        WorkerInfo(
            id=r["id"],
            name=r["name"],
            hostname=r["hostname"],
            pid=r["pid"],
            status=r["status"],
            max_concurrent=r["max_concurrent"],
            running=running.get(r["id"], 0),
            workflows=sorted(wfs.get(r["id"], [])),
            connected_at=r["connected_at"],
            last_heartbeat_at=r["last_heartbeat_at"],
            lease_expires_at=r["lease_expires_at"],
        )
        for r in rows.all()
    ]


def workflows_of(conn: Connection, project_id: str) -> list[WorkflowInfo]:
    """Workflows registered in a project."""
    rows = (
        conn.execute(
            sa.select(t.workflows)
            .where(t.workflows.c.project_id == project_id)
            .order_by(t.workflows.c.id)
        )
    ).mappings()
    return [
        WorkflowInfo(
            id=r["id"],
            kind=r["kind"],
            fingerprint=r["fingerprint"],
            description=r["description"],
            options=loads(r["options"]) or {},
            first_seen_at=r["first_seen_at"],
            last_seen_at=r["last_seen_at"],
        )
        for r in rows.all()
    ]
