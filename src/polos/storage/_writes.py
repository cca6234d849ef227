"""The batched write path: every hot write, applied inside one transaction per batch.

Fenced writes (steps, completions, failures, releases) are checked with one
``SELECT`` of ``(epoch, status)`` for the whole batch, in the same transaction
that applies them; step rows go in with one multi-row ``INSERT``, new
executions with another.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from polos.protocol import (
    AttemptInfo,
    ErrorInfo,
    Execution,
    ExecutionStatus,
    RetryPolicySpec,
    StepRecord,
    Task,
    now_ms,
)

from . import _tables as t
from ._codec import dumps, execution_from_row, loads, new_id, step_from_row
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

_INSERT_STEPS = sa.text(
    "INSERT INTO steps (execution_id, key, seq, kind, output, output_type, error, state, "
    "attempts, started_at, completed_at) VALUES (:execution_id, :key, :seq, :kind, :output, "
    ":output_type, :error, :state, :attempts, :started_at, :completed_at) ON CONFLICT DO NOTHING"
)
# One statement that is its own transaction: the fencing check and the insert together.
# FOR SHARE holds off a concurrent requeue (an UPDATE of the execution) until it is done.
_INSERT_STEP_FENCED = sa.text(
    "INSERT INTO steps (execution_id, key, seq, kind, output, output_type, error, state, "
    "attempts, started_at, completed_at) SELECT :execution_id, :key, :seq, :kind, :output, "
    ":output_type, :error, :state, :attempts, :started_at, :completed_at WHERE EXISTS "
    "(SELECT 1 FROM executions WHERE id = :execution_id AND epoch = :epoch "
    "AND status = 'running' FOR SHARE) ON CONFLICT DO NOTHING RETURNING key"
)
_UPDATE_STATE = sa.text("UPDATE executions SET state = :state, updated_at = :now WHERE id = :eid")
_COMPLETE = sa.text(
    "UPDATE executions SET status = 'completed', result = :result, "
    "state = COALESCE(:state, state), completed_at = :now, updated_at = :now, "
    "worker_id = NULL WHERE id = :eid AND epoch = :epoch AND status = 'running'"
)

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
    notifies: bool = False
    """Whether the database can tell other orchestrators about changes (PostgreSQL NOTIFY)."""


WORK_CHANNEL = "polos_work_v1"
"""NOTIFY channel: executions became runnable (created, requeued). Payload: empty."""
DONE_CHANNEL = "polos_done_v1"
"""NOTIFY channel: executions finished. Payload: comma-separated execution ids."""
CANCEL_CHANNEL = "polos_cancel_v1"
"""NOTIFY channel: stop a running execution. Payload: ``worker_id execution_id``."""

_NOTIFY = sa.text("SELECT pg_notify(:channel, :payload)")
_MAX_PAYLOAD = 7000  # PostgreSQL refuses NOTIFY payloads of 8000 bytes or more


def notify(conn: Connection, dialect: Dialect, channel: str, items: Sequence[str] = ("",)) -> None:
    """Send ``items`` on ``channel`` when the transaction commits (no-op without NOTIFY)."""
    if not dialect.notifies or not items:
        return
    payload = ""
    for item in items:
        if payload and len(payload) + len(item) + 1 > _MAX_PAYLOAD:
            conn.execute(_NOTIFY, {"channel": channel, "payload": payload})
            payload = ""
        payload = f"{payload},{item}" if payload else item
    conn.execute(_NOTIFY, {"channel": channel, "payload": payload})


def _crash_delay_ms(crashed_attempts: int) -> int:
    # The first crash is retried at once (fast failover); later ones back off so
    # that a poison execution that kills its worker does not spin.
    if crashed_attempts <= 1:
        return 0
    return int(min(30_000, 500 * 2 ** (crashed_attempts - 2)))


class Writes:
    """Applies batches of write ops for one dialect."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        # Statements are built once: SQLAlchemy then reuses their compiled form.
        self._leases = sa.text(
            "SELECT id, epoch, status FROM executions WHERE id IN :ids" + dialect.lock_rows
        ).bindparams(sa.bindparam("ids", expanding=True))
        fingerprint = (
            "(SELECT ww.fingerprint FROM worker_workflows ww "
            "WHERE ww.worker_id = :w AND ww.workflow_id = executions.workflow_id)"
        )
        self._claim_stmt = sa.text(
            "UPDATE executions SET status = 'running', worker_id = :w, epoch = epoch + 1, "
            "attempt = attempt + 1, updated_at = :now, started_at = COALESCE(started_at, :now), "
            f"code_changed = CASE WHEN code_fingerprint IS NOT NULL AND code_fingerprint <> {fingerprint} "
            "THEN TRUE ELSE code_changed END, "
            f"code_fingerprint = COALESCE(code_fingerprint, {fingerprint}) "
            "WHERE id IN (SELECT id FROM executions WHERE project_id = :p AND status = 'queued' "
            "AND available_at <= :now AND workflow_id IN "
            "(SELECT workflow_id FROM worker_workflows WHERE worker_id = :w) "
            "ORDER BY priority DESC, available_at, id LIMIT :n" + dialect.skip_locked + ") "
            "RETURNING id, workflow_id, epoch, attempt, payload, state, parent_id, root_id, "
            "created_at, code_fingerprint"
        )

    def requeue(
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
        self._announce(conn, (), transitions)
        return transitions

    def apply(self, conn: Connection, ops: Sequence[WriteOp]) -> BatchOutcome:
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
            rows = conn.execute(self._leases, {"ids": sorted(fenced_ids)})
            leases = {r.id: (r.epoch, r.status) for r in rows.all()}

        def holds(execution_id: str, epoch: int, *also: str) -> bool:
            lease = leases.get(execution_id)
            return lease is not None and lease[0] == epoch and lease[1] in (RUNNING, *also)

        creates = [(i, op) for i, op in enumerate(ops) if isinstance(op, CreateExecution)]
        if creates:
            for i, created in self._create_many(conn, creates, now).items():
                results[i] = created

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
                pass  # created above, all at once
            elif isinstance(op, ClaimOp):
                results[i] = self._claim(conn, op, now)
            elif isinstance(op, CancelOp):
                cancelled = self._cancel(conn, op, now)
                if cancelled.changed:
                    transitions.append(Transition(op.execution_id, "cancelled"))
                results[i] = cancelled

        if step_rows:
            conn.execute(_INSERT_STEPS, step_rows)
        if state_rows:
            conn.execute(_UPDATE_STATE, state_rows)
        if complete_rows:
            conn.execute(_COMPLETE, complete_rows)
        final: list[WriteResult | BaseException] = [r if r is not None else STALE for r in results]
        self._announce(conn, final, transitions)
        return BatchOutcome(results=final, transitions=transitions)

    def _announce(
        self, conn: Connection, results: Sequence[object], transitions: Sequence[Transition]
    ) -> None:
        """Tell other orchestrators (PostgreSQL) about new work and finished executions."""
        if not self.dialect.notifies:
            return
        created = any(isinstance(r, Created) and r.created for r in results)
        if created or any(t.status == QUEUED for t in transitions):
            notify(conn, self.dialect, WORK_CHANNEL)
        done = [
            t.execution_id for t in transitions if t.status in ("completed", "failed", "cancelled")
        ]
        notify(conn, self.dialect, DONE_CHANNEL, done)

    def record_step_alone(self, conn: Connection, op: RecordStepOp) -> BatchOutcome | None:
        """A lone step record as one autocommit statement (one round trip, not four).

        ``conn`` must be in autocommit mode. Returns ``None`` when the insert did not
        happen, so that the caller applies the op the general way to tell a stale
        lease from a re-sent record.
        """
        rows: list[dict[str, Any]] = []
        if self._stage_step(op, lambda *_: True, rows, [], 0) != OK:
            return None
        inserted = conn.execute(_INSERT_STEP_FENCED, {**rows[0], "epoch": op.epoch}).first()
        return BatchOutcome(results=[OK]) if inserted is not None else None

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
            self.requeue(conn, [op.execution_id], outcome="released", now=now)
            status = QUEUED
        leases[op.execution_id] = (op.epoch, status)
        return OK

    _INSERT_EXECUTION = sa.text(
        "INSERT INTO executions (id, project_id, workflow_id, status, payload, state, retry, "
        "max_recovery_attempts, parent_id, root_id, parent_step_key, idempotency_key, queue, "
        "concurrency_key, priority, created_at, updated_at, available_at) VALUES (:id, :project_id, "
        ":workflow_id, 'queued', :payload, :state, :retry, :max_recovery_attempts, :parent_id, "
        ":root_id, :parent_step_key, :idempotency_key, :queue, :concurrency_key, :priority, :now, "
        ":now, :now)"
    )

    def _create_many(
        self, conn: Connection, creates: list[tuple[int, CreateExecution]], now: int
    ) -> dict[int, Created | str]:
        """Create executions: one lookup per kind of fact, one multi-row insert."""
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
            policy = policies.get((op.project_id, op.workflow_id))
            if policy is None:
                results[index] = NO_WORKFLOW
                continue
            execution_id = new_id()
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
                    "idempotency_key": op.idempotency_key,
                    "queue": op.queue,
                    "concurrency_key": op.concurrency_key,
                    "priority": op.priority,
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
            conn.execute(self._INSERT_EXECUTION, rows_to_insert)
        return results

    def _claim(self, conn: Connection, op: ClaimOp, now: int) -> list[Task]:
        rows = (
            (
                conn.execute(
                    self._claim_stmt,
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
