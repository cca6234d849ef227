"""The storage API: every query Polos makes, over SQLAlchemy Core.

One :class:`Store` serves both dialects; the adapters (``_sqlite.py``,
``_postgres.py``) only create engines and supply the few clauses that differ
(:class:`Dialect`). Hot writes arrive in batches (:meth:`Store.apply_batch`) so
that concurrent workflows share one transaction.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from polos.protocol import (
    AttemptInfo,
    ErrorInfo,
    Execution,
    ExecutionStatus,
    RetryPolicySpec,
    StepRecord,
    Task,
    WorkerInfo,
    WorkflowInfo,
    WorkflowSpec,
    now_ms,
)

from . import _tables as t
from ._codec import dumps, execution_from_row, loads, new_id, step_from_row
from ._errors import translate_errors
from ._ops import (
    OK,
    STALE,
    BatchOutcome,
    Cancelled,
    CancelOp,
    ClaimOp,
    CompleteOp,
    Created,
    CreateExecution,
    FailOp,
    RecordStepOp,
    ReleaseOp,
    Transition,
    WriteOp,
    WriteResult,
)

T = TypeVar("T")

NO_WORKFLOW = "no_workflow"
"""Result of :class:`CreateExecution` when the workflow id was never registered."""

RUNNING = ExecutionStatus.RUNNING.value
QUEUED = ExecutionStatus.QUEUED.value
ACTIVE_STATUSES = (QUEUED, RUNNING, ExecutionStatus.WAITING.value)


@dataclass(frozen=True, slots=True)
class Dialect:
    """The clauses that differ between SQLite and PostgreSQL."""

    name: str
    lock_rows: str
    """Appended to a SELECT that reads rows the same transaction will update."""
    skip_locked: str
    """Appended to the claim sub-select, so that concurrent claimers skip each other's rows."""
    inline: bool
    """Run statements on the event loop thread (local SQLite) instead of database threads."""


def _crash_delay_ms(crashed_attempts: int) -> int:
    # The first crash is retried at once (fast failover); later ones back off so
    # that a poison execution that kills its worker does not spin.
    if crashed_attempts <= 1:
        return 0
    return int(min(30_000, 500 * 2 ** (crashed_attempts - 2)))


class Store:
    """All database access of the orchestrator."""

    def __init__(
        self,
        url: str,
        write_engine: Engine,
        read_engine: Engine,
        dialect: Dialect,
        *,
        read_threads: int = 4,
    ) -> None:
        self.url = url
        self.dialect = dialect
        self._write_engine = write_engine
        self._read_engine = read_engine
        # Blocking drivers. A local SQLite file is fastest called inline on the event loop:
        # measured, a writer thread made every batch wait for the GIL (throughput 124 → 277
        # workflows/s inline), and SQLAlchemy's asyncio bridge cost ~1.4 ms per transaction.
        # A networked database (PostgreSQL) runs on threads so round trips never block the loop.
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="polos-db-write")
        self._readers = ThreadPoolExecutor(read_threads, thread_name_prefix="polos-db-read")

    # ------------------------------------------------------------------ plumbing

    async def close(self) -> None:
        """Dispose of every pooled connection and stop the database threads."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._writer, self._write_engine.dispose)
        if self._read_engine is not self._write_engine:
            await loop.run_in_executor(self._readers, self._read_engine.dispose)
        self._writer.shutdown(wait=False)
        self._readers.shutdown(wait=False)

    def _in_write_tx(self, fn: Callable[[Connection], T]) -> T:
        with translate_errors(self.url), self._write_engine.begin() as conn:
            return fn(conn)

    def _in_read(self, fn: Callable[[Connection], T]) -> T:
        with translate_errors(self.url), self._read_engine.connect() as conn:
            return fn(conn)

    def _with_engine(self, fn: Callable[[Engine], T]) -> T:
        with translate_errors(self.url):
            return fn(self._write_engine)

    async def write_engine_call(self, fn: Callable[[Engine], T]) -> T:
        """Run ``fn(write_engine)`` on the writer thread (migrations manage their own transactions)."""
        return await asyncio.get_running_loop().run_in_executor(self._writer, self._with_engine, fn)

    async def write(self, fn: Callable[[Connection], T]) -> T:
        """Run ``fn`` in one write transaction, on the writer thread."""
        if self.dialect.inline:
            return self._in_write_tx(fn)
        return await asyncio.get_running_loop().run_in_executor(self._writer, self._in_write_tx, fn)

    async def read(self, fn: Callable[[Connection], T]) -> T:
        """Run ``fn`` on a read connection, on a reader thread."""
        if self.dialect.inline:
            return self._in_read(fn)
        return await asyncio.get_running_loop().run_in_executor(self._readers, self._in_read, fn)

    # ------------------------------------------------------------------ projects

    async def ensure_project(self, project_id: str, name: str) -> None:
        """Create the project if it does not exist."""

        def go(conn: Connection) -> None:
            exists = conn.scalar(sa.select(t.projects.c.id).where(t.projects.c.id == project_id))
            if exists is None:
                conn.execute(
                    t.projects.insert().values(id=project_id, name=name, created_at=now_ms())
                )

        await self.write(go)

    async def project_exists(self, project_id: str) -> bool:
        """Whether a project with this id exists."""

        def go(conn: Connection) -> bool:
            row = conn.scalar(sa.select(t.projects.c.id).where(t.projects.c.id == project_id))
            return row is not None

        return await self.read(go)

    # ------------------------------------------------------------------ workers and workflows

    async def register_worker(
        self,
        *,
        project_id: str,
        worker_id: str,
        name: str,
        hostname: str,
        pid: int,
        orchestrator_id: str,
        max_concurrent: int,
        workflows: Sequence[WorkflowSpec],
        active: Mapping[str, int],
        lease_ms: int,
    ) -> list[str]:
        """Record a (re)connecting worker and the workflows it serves.

        ``active`` maps the executions the worker says it still runs to their
        epochs. Returns those it no longer owns (to abandon). Executions the
        database assigns to this worker but that it did not list were lost by
        the worker: they are requeued as crashed.
        """
        now = now_ms()

        def go(conn: Connection) -> list[str]:
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
                    .where(t.workflows.c.project_id == project_id, t.workflows.c.id == spec.id)
                    .values(**values)
                )
                if updated.rowcount == 0:
                    conn.execute(
                        t.workflows.insert().values(
                            project_id=project_id, id=spec.id, first_seen_at=now, **values
                        )
                    )
            worker_values = {
                "project_id": project_id,
                "name": name,
                "hostname": hostname,
                "pid": pid,
                "orchestrator_id": orchestrator_id,
                "max_concurrent": max_concurrent,
                "status": "connected",
                "last_heartbeat_at": now,
                "lease_expires_at": now + lease_ms,
            }
            updated = conn.execute(
                t.workers.update().where(t.workers.c.id == worker_id).values(**worker_values)
            )
            if updated.rowcount == 0:
                conn.execute(
                    t.workers.insert().values(id=worker_id, connected_at=now, **worker_values)
                )
            conn.execute(
                t.worker_workflows.delete().where(t.worker_workflows.c.worker_id == worker_id)
            )
            if workflows:
                conn.execute(
                    t.worker_workflows.insert(),
                    [
                        {"worker_id": worker_id, "workflow_id": s.id, "fingerprint": s.fingerprint}
                        for s in workflows
                    ],
                )
            rows = (
                conn.execute(
                    sa.select(t.executions.c.id, t.executions.c.epoch).where(
                        t.executions.c.worker_id == worker_id, t.executions.c.status == RUNNING
                    )
                )
            ).all()
            owned = {r.id: r.epoch for r in rows}
            abandon = [eid for eid, epoch in active.items() if owned.get(eid) != epoch]
            lost = [eid for eid in owned if eid not in active]
            if lost:
                self._requeue(conn, lost, outcome="crashed", now=now)
            return abandon

        return await self.write(go)

    async def renew_leases(self, beats: Mapping[str, int], lease_ms: int) -> None:
        """Extend the leases of workers that heartbeated (worker id → last heartbeat ms)."""
        if not beats:
            return

        def go(conn: Connection) -> None:
            conn.execute(
                t.workers.update()
                .where(t.workers.c.id == sa.bindparam("wid"), t.workers.c.status == "connected")
                .values(
                    last_heartbeat_at=sa.bindparam("beat"),
                    lease_expires_at=sa.bindparam("until"),
                ),
                [{"wid": w, "beat": b, "until": b + lease_ms} for w, b in beats.items()],
            )

        await self.write(go)

    async def extend_all_leases(self, lease_ms: int) -> None:
        """Give every connected worker a fresh lease (start-up grace after an orchestrator restart)."""
        until = now_ms() + lease_ms

        def go(conn: Connection) -> None:
            conn.execute(
                t.workers.update()
                .where(t.workers.c.status == "connected", t.workers.c.lease_expires_at < until)
                .values(lease_expires_at=until)
            )

        await self.write(go)

    async def worker_gone(
        self, worker_id: str, *, orchestrator_id: str | None = None, graceful: bool = False
    ) -> list[Transition]:
        """Mark a worker gone and requeue (or, past their recovery limit, fail) what it ran.

        With ``orchestrator_id``, only if the worker is still attached to that
        orchestrator: a worker that already reconnected elsewhere is left alone.
        """
        now = now_ms()

        def go(conn: Connection) -> list[Transition]:
            query = t.workers.update().where(
                t.workers.c.id == worker_id, t.workers.c.status == "connected"
            )
            if orchestrator_id is not None:
                query = query.where(t.workers.c.orchestrator_id == orchestrator_id)
            marked = conn.execute(query.values(status="gone", lease_expires_at=now))
            if marked.rowcount == 0:
                return []
            ids = (
                conn.scalars(
                    sa.select(t.executions.c.id).where(
                        t.executions.c.worker_id == worker_id, t.executions.c.status == RUNNING
                    )
                )
            ).all()
            return self._requeue(
                conn, list(ids), outcome="released" if graceful else "crashed", now=now
            )

        return await self.write(go)

    async def expired_workers(self) -> list[str]:
        """Workers still marked connected whose lease has lapsed."""
        now = now_ms()

        def go(conn: Connection) -> list[str]:
            rows = conn.scalars(
                sa.select(t.workers.c.id).where(
                    t.workers.c.status == "connected", t.workers.c.lease_expires_at < now
                )
            )
            return list(rows.all())

        return await self.read(go)

    def _requeue(
        self, conn: Connection, ids: Sequence[str], *, outcome: str, now: int
    ) -> list[Transition]:
        """Put running executions back in the queue after a crash or a release."""
        transitions: list[Transition] = []
        if not ids:
            return transitions
        rows = (
            conn.execute(
                sa.text(
                    "SELECT id, epoch, attempt, worker_id, crashed_attempts, max_recovery_attempts, attempts "
                    "FROM executions WHERE status = 'running' AND id IN :ids"
                    + self.dialect.lock_rows
                ).bindparams(sa.bindparam("ids", expanding=True)),
                {"ids": list(ids)},
            )
        ).mappings()
        for row in rows.all():
            attempts = loads(row["attempts"]) or []
            info = AttemptInfo(
                attempt=row["attempt"], outcome=outcome, worker_id=row["worker_id"], ended_at=now
            )
            attempts.append(info.model_dump(mode="json", exclude_none=True))
            values: dict[str, Any] = {
                "worker_id": None,
                "attempts": dumps(attempts),
                "updated_at": now,
            }
            if outcome == "crashed":
                crashed = row["crashed_attempts"] + 1
                values["crashed_attempts"] = crashed
                if crashed >= row["max_recovery_attempts"]:
                    error = ErrorInfo(
                        type="polos.MaxRecoveryAttemptsExceeded",
                        message=(
                            f"the execution's worker died {crashed} times "
                            f"(max_recovery_attempts={row['max_recovery_attempts']}); giving up"
                        ),
                    )
                    values.update(status="failed", error=error.model_dump_json(), completed_at=now)
                    transitions.append(Transition(row["id"], "failed"))
                else:
                    values.update(status=QUEUED, available_at=now + _crash_delay_ms(crashed))
                    transitions.append(Transition(row["id"], QUEUED))
            else:
                values.update(status=QUEUED, available_at=now)
                transitions.append(Transition(row["id"], QUEUED))
            conn.execute(
                t.executions.update()
                .where(t.executions.c.id == row["id"], t.executions.c.epoch == row["epoch"])
                .values(**values)
            )
        return transitions

    async def list_workers(self, project_id: str) -> list[WorkerInfo]:
        """Known workers of a project, most recently connected first."""

        def go(conn: Connection) -> list[WorkerInfo]:
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

        return await self.read(go)

    async def list_workflows(self, project_id: str) -> list[WorkflowInfo]:
        """Workflows registered in a project."""

        def go(conn: Connection) -> list[WorkflowInfo]:
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

        return await self.read(go)

    # ------------------------------------------------------------------ reads

    async def get_execution(self, project_id: str, execution_id: str) -> Execution | None:
        """One execution of a project, or ``None``."""

        def go(conn: Connection) -> Execution | None:
            row = (
                (
                    conn.execute(
                        sa.select(t.executions).where(
                            t.executions.c.id == execution_id,
                            t.executions.c.project_id == project_id,
                        )
                    )
                )
                .mappings()
                .first()
            )
            return execution_from_row(row) if row is not None else None

        return await self.read(go)

    async def list_steps(self, execution_id: str) -> list[StepRecord]:
        """An execution's step log in recording order."""

        def go(conn: Connection) -> list[StepRecord]:
            rows = (
                conn.execute(
                    sa.select(t.steps)
                    .where(t.steps.c.execution_id == execution_id)
                    .order_by(t.steps.c.seq)
                )
            ).mappings()
            return [step_from_row(r) for r in rows.all()]

        return await self.read(go)

    async def list_executions(
        self,
        project_id: str,
        *,
        statuses: Iterable[str] = (),
        workflow_id: str | None = None,
        limit: int = 50,
        cursor: tuple[int, str] | None = None,
    ) -> tuple[list[Execution], tuple[int, str] | None]:
        """A page of executions, newest first, and the cursor of the next page."""
        ex = t.executions
        query = sa.select(ex).where(ex.c.project_id == project_id)
        status_list = list(statuses)
        if status_list:
            query = query.where(ex.c.status.in_(status_list))
        if workflow_id is not None:
            query = query.where(ex.c.workflow_id == workflow_id)
        if cursor is not None:
            created, last_id = cursor
            query = query.where(
                sa.or_(
                    ex.c.created_at < created,
                    sa.and_(ex.c.created_at == created, ex.c.id < last_id),
                )
            )
        query = query.order_by(ex.c.created_at.desc(), ex.c.id.desc()).limit(limit + 1)

        def go(conn: Connection) -> tuple[list[Execution], tuple[int, str] | None]:
            rows = (conn.execute(query)).mappings().all()
            items = [execution_from_row(r) for r in rows[:limit]]
            next_cursor = (items[-1].created_at, items[-1].id) if len(rows) > limit else None
            return items, next_cursor

        return await self.read(go)

    async def next_available_at(self) -> int | None:
        """Earliest ``available_at`` among queued executions (to sleep until then)."""

        def go(conn: Connection) -> int | None:
            value = conn.scalar(
                sa.select(sa.func.min(t.executions.c.available_at)).where(
                    t.executions.c.status == QUEUED
                )
            )
            return int(value) if value is not None else None

        return await self.read(go)

    async def terminal_statuses(self, ids: Sequence[str]) -> dict[str, str]:
        """Status of each of ``ids`` that has finished."""
        if not ids:
            return {}

        def go(conn: Connection) -> dict[str, str]:
            rows = conn.execute(
                sa.select(t.executions.c.id, t.executions.c.status).where(
                    t.executions.c.id.in_(list(ids)),
                    t.executions.c.status.in_(["completed", "failed", "cancelled"]),
                )
            )
            return {r.id: r.status for r in rows.all()}

        return await self.read(go)

    # ------------------------------------------------------------------ batched writes

    async def apply_batch(self, ops: Sequence[WriteOp]) -> BatchOutcome:
        """Apply ``ops`` in one transaction; if that fails, apply each alone.

        Isolation keeps one bad op (a constraint violation, say) from failing
        the writes of unrelated executions that happened to share its batch.
        """
        try:
            return await self.write(lambda conn: self._apply(conn, ops))
        except Exception as exc:
            if len(ops) == 1:
                return BatchOutcome(results=[exc])
        outcome = BatchOutcome(results=[])
        for op in ops:
            try:
                single = await self.write(lambda conn, op=op: self._apply(conn, [op]))  # type: ignore[misc]
                outcome.results.extend(single.results)
                outcome.transitions.extend(single.transitions)
            except Exception as exc:
                outcome.results.append(exc)
        return outcome

    def _apply(self, conn: Connection, ops: Sequence[WriteOp]) -> BatchOutcome:
        now = now_ms()
        results: list[WriteResult | BaseException | None] = [None] * len(ops)
        transitions: list[Transition] = []

        # Lease checks for every fenced write, in one query.
        fenced_ids = {
            op.execution_id
            for op in ops
            if isinstance(op, RecordStepOp | CompleteOp | FailOp | ReleaseOp)
        }
        leases: dict[str, tuple[int, str]] = {}
        if fenced_ids:
            rows = conn.execute(
                sa.text(
                    "SELECT id, epoch, status FROM executions WHERE id IN :ids"
                    + self.dialect.lock_rows
                ).bindparams(sa.bindparam("ids", expanding=True)),
                {"ids": sorted(fenced_ids)},
            )
            leases = {r.id: (r.epoch, r.status) for r in rows.all()}

        def holds(execution_id: str, epoch: int, *also: str) -> bool:
            lease = leases.get(execution_id)
            return lease is not None and lease[0] == epoch and lease[1] in (RUNNING, *also)

        step_rows: list[dict[str, Any]] = []
        state_rows: list[dict[str, Any]] = []
        complete_rows: list[dict[str, Any]] = []
        for i, op in enumerate(ops):
            if isinstance(op, RecordStepOp):
                results[i] = self._stage_step(op, holds, step_rows, state_rows, now)
            elif isinstance(op, CompleteOp):
                if holds(op.execution_id, op.epoch):
                    complete_rows.append(
                        {
                            "eid": op.execution_id,
                            "epoch": op.epoch,
                            "result": op.result_json,
                            "state": op.state_json,
                            "now": now,
                        }
                    )
                    leases[op.execution_id] = (op.epoch, "completed")
                    transitions.append(Transition(op.execution_id, "completed"))
                    results[i] = OK
                else:
                    # A resend of a complete that was applied before a reconnect is fine.
                    results[i] = OK if holds(op.execution_id, op.epoch, "completed") else STALE
            elif isinstance(op, FailOp | ReleaseOp):
                results[i] = self._end_attempt(conn, op, holds, leases, transitions, now)
            elif isinstance(op, CreateExecution):
                results[i] = self._create(conn, op, now)
            elif isinstance(op, ClaimOp):
                results[i] = self._claim(conn, op, now)
            elif isinstance(op, CancelOp):
                cancelled = self._cancel(conn, op, now)
                if cancelled.changed:
                    transitions.append(Transition(op.execution_id, "cancelled"))
                results[i] = cancelled

        if step_rows:
            conn.execute(
                sa.text(
                    "INSERT INTO steps (execution_id, key, seq, kind, output, output_type, error, state, "
                    "attempts, started_at, completed_at) VALUES (:execution_id, :key, :seq, :kind, "
                    ":output, :output_type, :error, "
                    ":state, :attempts, :started_at, :completed_at) ON CONFLICT DO NOTHING"
                ),
                step_rows,
            )
        if state_rows:
            conn.execute(
                sa.text("UPDATE executions SET state = :state, updated_at = :now WHERE id = :eid"),
                state_rows,
            )
        if complete_rows:
            conn.execute(
                sa.text(
                    "UPDATE executions SET status = 'completed', result = :result, "
                    "state = COALESCE(:state, state), completed_at = :now, updated_at = :now, "
                    "worker_id = NULL WHERE id = :eid AND epoch = :epoch AND status = 'running'"
                ),
                complete_rows,
            )
        final: list[WriteResult | BaseException] = [r if r is not None else STALE for r in results]
        return BatchOutcome(results=final, transitions=transitions)

    @staticmethod
    def _stage_step(
        op: RecordStepOp,
        holds: Callable[..., bool],
        step_rows: list[dict[str, Any]],
        state_rows: list[dict[str, Any]],
        now: int,
    ) -> str:
        if not holds(op.execution_id, op.epoch):
            return STALE
        step = op.step
        step_rows.append(
            {
                "execution_id": op.execution_id,
                "key": step.key,
                "seq": step.seq,
                "kind": step.kind.value,
                "output": dumps(step.output) if step.error is None else None,
                "output_type": step.output_type,
                "error": step.error.model_dump_json() if step.error is not None else None,
                "state": dumps(step.state) if step.has_state else None,
                "attempts": step.attempts,
                "started_at": step.started_at,
                "completed_at": step.completed_at,
            }
        )
        if step.has_state:
            state_rows.append({"eid": op.execution_id, "state": dumps(step.state), "now": now})
        return OK

    def _end_attempt(
        self,
        conn: Connection,
        op: FailOp | ReleaseOp,
        holds: Callable[..., bool],
        leases: dict[str, tuple[int, str]],
        transitions: list[Transition],
        now: int,
    ) -> str:
        if not holds(op.execution_id, op.epoch):
            # A re-sent fail that was applied before a reconnect is fine.
            resent = isinstance(op, FailOp) and holds(op.execution_id, op.epoch, "failed", QUEUED)
            return OK if resent else STALE
        if isinstance(op, FailOp):
            status = self._fail(conn, op, now)
            if status == "failed":
                transitions.append(Transition(op.execution_id, "failed"))
        else:
            self._requeue(conn, [op.execution_id], outcome="released", now=now)
            status = QUEUED
        leases[op.execution_id] = (op.epoch, status)
        return OK

    def _create(self, conn: Connection, op: CreateExecution, now: int) -> Created | str:
        ex = t.executions
        if op.idempotency_key is not None:
            row = (
                (
                    conn.execute(
                        sa.select(ex).where(
                            ex.c.project_id == op.project_id,
                            ex.c.idempotency_key == op.idempotency_key,
                        )
                    )
                )
                .mappings()
                .first()
            )
            if row is not None:
                return Created(execution_from_row(row), created=False)
        wf = (
            conn.execute(
                sa.select(t.workflows.c.retry, t.workflows.c.max_recovery_attempts).where(
                    t.workflows.c.project_id == op.project_id, t.workflows.c.id == op.workflow_id
                )
            )
        ).first()
        if wf is None:
            return NO_WORKFLOW
        execution_id = new_id()
        values: dict[str, Any] = {
            "id": execution_id,
            "project_id": op.project_id,
            "workflow_id": op.workflow_id,
            "status": QUEUED,
            "payload": op.payload_json,
            "state": op.state_json,
            "retry": wf.retry,
            "max_recovery_attempts": wf.max_recovery_attempts,
            "parent_id": op.parent_id,
            "root_id": op.root_id or execution_id,
            "parent_step_key": op.parent_step_key,
            "idempotency_key": op.idempotency_key,
            "queue": op.queue,
            "concurrency_key": op.concurrency_key,
            "priority": op.priority,
            "created_at": now,
            "updated_at": now,
            "available_at": now,
        }
        conn.execute(ex.insert().values(**values))
        execution = Execution(
            id=execution_id,
            project_id=op.project_id,
            workflow_id=op.workflow_id,
            status=ExecutionStatus.QUEUED,
            payload=loads(op.payload_json),
            state=loads(op.state_json),
            attempt=0,
            parent_id=op.parent_id,
            root_id=values["root_id"],
            idempotency_key=op.idempotency_key,
            queue=op.queue,
            concurrency_key=op.concurrency_key,
            priority=op.priority,
            created_at=now,
            updated_at=now,
            available_at=now,
        )
        return Created(execution, created=True)

    def _claim(self, conn: Connection, op: ClaimOp, now: int) -> list[Task]:
        fingerprint = (
            "(SELECT ww.fingerprint FROM worker_workflows ww "
            "WHERE ww.worker_id = :w AND ww.workflow_id = executions.workflow_id)"
        )
        rows = (
            (
                conn.execute(
                    sa.text(
                        "UPDATE executions SET status = 'running', worker_id = :w, epoch = epoch + 1, "
                        "attempt = attempt + 1, updated_at = :now, started_at = COALESCE(started_at, :now), "
                        f"code_changed = CASE WHEN code_fingerprint IS NOT NULL AND code_fingerprint <> {fingerprint} "
                        "THEN TRUE ELSE code_changed END, "
                        f"code_fingerprint = COALESCE(code_fingerprint, {fingerprint}) "
                        "WHERE id IN (SELECT id FROM executions WHERE project_id = :p AND status = 'queued' "
                        "AND available_at <= :now AND workflow_id IN "
                        "(SELECT workflow_id FROM worker_workflows WHERE worker_id = :w) "
                        "ORDER BY priority DESC, available_at, id LIMIT :n"
                        + self.dialect.skip_locked
                        + ") "
                        "RETURNING id, workflow_id, epoch, attempt, payload, state, parent_id, root_id, "
                        "created_at, code_fingerprint"
                    ),
                    {"w": op.worker_id, "p": op.project_id, "now": now, "n": op.limit},
                )
            )
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
            )
            for r in sorted(rows, key=lambda r: r["id"])
        ]

    def _fail(self, conn: Connection, op: FailOp, now: int) -> str:
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
            values.update(status="failed", error=op.error.model_dump_json(), completed_at=now)
            status = "failed"
        conn.execute(
            ex.update().where(ex.c.id == op.execution_id, ex.c.epoch == op.epoch).values(**values)
        )
        return status

    def _cancel(self, conn: Connection, op: CancelOp, now: int) -> Cancelled:
        ex = t.executions
        row = (
            (
                conn.execute(
                    sa.select(ex).where(
                        ex.c.id == op.execution_id, ex.c.project_id == op.project_id
                    )
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
            "cancelled_by": op.cancelled_by,
            "error": ErrorInfo(
                type="polos.ExecutionCancelled", message=f"cancelled by {op.cancelled_by}"
            ).model_dump_json(),
        }
        conn.execute(ex.update().where(ex.c.id == op.execution_id).values(**values))
        merged = dict(row)
        merged.update(values)
        return Cancelled(
            execution=execution_from_row(merged), changed=True, worker_id=row["worker_id"]
        )


def unit_random() -> float:
    """A uniform number in [0, 1) for retry jitter."""
    return random.random()
