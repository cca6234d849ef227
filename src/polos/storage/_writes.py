"""The batched write path: every hot write, applied inside one transaction per batch.

Fenced writes (steps, completions, failures, releases) are checked with one
``SELECT`` of ``(epoch, status)`` for the whole batch, in the same transaction
that applies them; step rows go in with one multi-row ``INSERT``, new
executions with another.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from polos.protocol import (
    AttemptInfo,
    ErrorInfo,
    now_ms,
)

from . import _tables as t
from ._acquire import AcquireWaits, acquire_spec, acquired_limit, grant_output, is_acquire
from ._claims import ClaimStatements, claim
from ._codec import dumps, execution_from_row, loads
from ._creates import create_children, create_many
from ._deadlines import DeadlineWrites
from ._events import EventWrites
from ._flow import FlowLocks, FlowWrites
from ._lifecycle import QUEUED, RUNNING, attempt_stopped, cancel, fail
from ._ops import (
    OK,
    STALE,
    BatchOutcome,
    CancelOp,
    ClaimOp,
    CompleteOp,
    Created,
    CreateExecution,
    FailOp,
    Fired,
    FireDueOp,
    Granted,
    Published,
    PublishOp,
    RecordStepOp,
    Rejected,
    ReleaseOp,
    Resumed,
    ResumeOp,
    Transition,
    WaitOp,
    WriteOp,
    WriteResult,
)
from ._waits import WaitWrites, watermark

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
_COMPLETE_SQL = (
    "UPDATE executions SET status = 'completed', result = :result, "
    "state = COALESCE(:state, state), completed_at = :now, updated_at = :now, "
    "worker_id = NULL, deadline_at = NULL, claimed_at = NULL, "
    "run_elapsed_ms = run_elapsed_ms + :now - COALESCE(claimed_at, :now) "
    "WHERE id = :eid AND epoch = :epoch AND status = 'running'"
)
_COMPLETE = sa.text(_COMPLETE_SQL)


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
EVENT_CHANNEL = "polos_event_v1"
"""NOTIFY channel: events were published. Payload: ``project_id<TAB>topic`` items."""
CANCEL_CHANNEL = "polos_cancel_v1"
"""NOTIFY channel: stop running executions. Payload: ``["worker", "execution", "reason"]``
items, comma-separated (``_listen.cancel_targets``; the first form was ``worker execution``)."""

KEYS_CHANNEL = "polos_keys_v1"
"""NOTIFY channel: API keys were revoked. Payload: comma-separated key ids."""

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


_FENCED = (RecordStepOp, WaitOp, CompleteOp, FailOp, ReleaseOp)
_ENDS_RUN = (WaitOp, CompleteOp, FailOp, ReleaseOp)


@dataclass(slots=True)
class _Batch:
    """What the ops of one batch share while it is applied."""

    conn: Connection
    now: int
    leases: dict[str, tuple[int, str]] = field(default_factory=dict)
    """execution id → (epoch, status), as locked at the start and updated by each op."""
    rows: dict[str, Any] = field(default_factory=dict)
    """execution id → its lease row (project, root, parent...)."""
    step_rows: list[dict[str, Any]] = field(default_factory=list)
    state_rows: list[dict[str, Any]] = field(default_factory=list)
    complete_rows: list[dict[str, Any]] = field(default_factory=list)
    finished_children: list[tuple[str, str]] = field(default_factory=list)
    transitions: list[Transition] = field(default_factory=list)
    flow: FlowLocks = field(default_factory=FlowLocks)
    """Queue and rate-limit rows locked for this batch's claims and acquires."""

    def holds(self, execution_id: str, epoch: int, *also: str) -> bool:
        """Whether ``epoch`` still owns the execution (running, or one of ``also``)."""
        lease = self.leases.get(execution_id)
        return lease is not None and lease[0] == epoch and lease[1] in (RUNNING, *also)

    def child_finished(self, execution_id: str) -> None:
        """A fenced execution finished: its parent may be waiting for it."""
        row = self.rows.get(execution_id)
        if row is not None and row["parent_id"] is not None and row["parent_step_key"]:
            self.finished_children.append((row["parent_id"], row["parent_step_key"]))


class Writes:
    """Applies batches of write ops for one dialect."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self.waits = WaitWrites(dialect.lock_rows, dialect.skip_locked)
        self.deadlines = DeadlineWrites(dialect.skip_locked)
        self.events = EventWrites(dialect.lock_rows, dialect.skip_locked, self.waits, create_many)
        # Statements are built once: SQLAlchemy then reuses their compiled form.
        self._leases = sa.text(
            "SELECT id, epoch, status, project_id, workflow_id, root_id, parent_id, "
            "parent_step_key, queue FROM executions WHERE id IN :ids" + dialect.lock_rows
        ).bindparams(sa.bindparam("ids", expanding=True))
        self.claims = ClaimStatements(dialect.skip_locked)
        self.flow = FlowWrites(dialect.lock_rows, dialect.skip_locked)
        self.acquires = AcquireWaits(self.flow, dialect.skip_locked)
        self._complete_alone = sa.text(
            f"WITH done AS ({_COMPLETE_SQL} AND parent_id IS NULL RETURNING id, queue) "
            f"SELECT pg_notify('{DONE_CHANNEL}', id), CASE WHEN queue IS NOT NULL "
            f"THEN pg_notify('{WORK_CHANNEL}', '') END FROM done"
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
                    "SELECT id, epoch, attempt, worker_id, crashed_attempts, max_recovery_attempts, "
                    "attempts, parent_id, parent_step_key "
                    "FROM executions WHERE status = 'running' AND id IN :ids"
                    + self.dialect.lock_rows
                ).bindparams(sa.bindparam("ids", expanding=True)),
                {"ids": list(ids)},
            )
        ).mappings()
        gave_up: list[tuple[str, str]] = []
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
                **attempt_stopped(now),  # the running time of a lost attempt counts too
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
                    values.update(
                        status="failed",
                        error=error.model_dump_json(),
                        completed_at=now,
                        deadline_at=None,
                    )
                    transitions.append(Transition(row["id"], "failed"))
                    if row["parent_id"] is not None and row["parent_step_key"] is not None:
                        gave_up.append((row["parent_id"], row["parent_step_key"]))
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
        transitions += self.waits.children_finished(conn, gave_up, now)
        self._announce(conn, (), transitions)
        return transitions

    def apply(self, conn: Connection, ops: Sequence[WriteOp]) -> BatchOutcome:
        batch = _Batch(conn, now_ms())
        # Queue and rate-limit rows first: every batch locks them before any execution row.
        claims = [(op.project_id, op.worker_id) for op in ops if isinstance(op, ClaimOp)]
        acquires = [acquired_limit(op) for op in ops if isinstance(op, WaitOp) and is_acquire(op)]
        if claims or acquires:
            batch.flow = self.flow.prepare(conn, claims, acquires, batch.now)
        # Lease checks for every fenced write, in one query.
        fenced_ids = {op.execution_id for op in ops if isinstance(op, _FENCED)}
        if fenced_ids:
            rows = conn.execute(self._leases, {"ids": sorted(fenced_ids)}).mappings().all()
            batch.leases = {r["id"]: (r["epoch"], r["status"]) for r in rows}
            batch.rows = {r["id"]: r for r in rows}
        self._lock_topics(batch, ops)
        results: list[WriteResult | BaseException | None] = [None] * len(ops)
        creates = [(i, op) for i, op in enumerate(ops) if isinstance(op, CreateExecution)]
        if creates:
            for i, created in create_many(conn, creates, batch.now).items():
                results[i] = created
        for i, op in enumerate(ops):
            if not isinstance(op, CreateExecution):  # created above, all at once
                results[i] = self._apply_one(batch, op)
        if batch.step_rows:
            conn.execute(_INSERT_STEPS, batch.step_rows)
        if batch.state_rows:
            conn.execute(_UPDATE_STATE, batch.state_rows)
        if batch.complete_rows:
            conn.execute(_COMPLETE, batch.complete_rows)
        if batch.finished_children:
            batch.transitions.extend(
                self.waits.children_finished(conn, batch.finished_children, batch.now)
            )
        final: list[WriteResult | BaseException] = [r if r is not None else STALE for r in results]
        if self.dialect.notifies and any(
            isinstance(op, _ENDS_RUN) and (batch.rows.get(op.execution_id) or {}).get("queue")
            for op in ops
        ):
            # A queue slot freed up: other orchestrators' workers may take it now.
            notify(conn, self.dialect, WORK_CHANNEL)
        self._announce(conn, final, batch.transitions)
        return BatchOutcome(results=final, transitions=batch.transitions)

    def _lock_topics(self, batch: _Batch, ops: Sequence[WriteOp]) -> None:
        """Lock the topic rows a batch will touch, in one order (PostgreSQL).

        Publishes and event waits lock their topic's row; two batches touching the
        same two topics in opposite orders would deadlock without this.
        """
        if not self.dialect.lock_rows:
            return
        topics: set[tuple[str, str]] = set()
        for op in ops:
            if isinstance(op, PublishOp):
                topics.add((op.project_id, op.topic))
            elif isinstance(op, WaitOp | RecordStepOp):
                topic = op.spec.topic if isinstance(op, WaitOp) else op.publish and op.publish.topic
                row = batch.rows.get(op.execution_id)
                if topic and row is not None:
                    topics.add((row["project_id"], topic))
        if len(topics) > 1:
            for project_id, topic in sorted(topics):
                watermark(batch.conn, project_id, topic, batch.now)

    def _apply_one(self, batch: _Batch, op: WriteOp) -> WriteResult:
        conn, now, holds = batch.conn, batch.now, batch.holds
        if isinstance(op, RecordStepOp):
            if op.publish is None and not op.children:
                return self._stage_step(op, holds, batch.step_rows, batch.state_rows, now)
            return self._step_with_effects(batch, op)
        if isinstance(op, WaitOp):
            return self._wait(batch, op)
        if isinstance(op, CompleteOp):
            return self._complete(batch, op)
        if isinstance(op, FailOp | ReleaseOp):
            before = len(batch.transitions)
            result = self._end_attempt(conn, op, holds, batch.leases, batch.transitions, now)
            if any(t.status == "failed" for t in batch.transitions[before:]):
                batch.child_finished(op.execution_id)
            return result
        if isinstance(op, ClaimOp):
            return claim(conn, self.claims, self.flow, batch.flow, op, now)
        if isinstance(op, CancelOp):
            cancelled = cancel(conn, op, now)
            if cancelled.changed and cancelled.execution is not None:
                batch.transitions.append(Transition(op.execution_id, "cancelled"))
                batch.transitions.extend(
                    Transition(d, "cancelled") for d, _ in cancelled.descendants
                )
                ex = cancelled.execution
                if ex.parent_id is not None and ex.parent_step_key:
                    batch.finished_children.append((ex.parent_id, ex.parent_step_key))
            return cancelled
        if isinstance(op, PublishOp):
            published, woken = self.events.publish(conn, op, now)
            batch.transitions.extend(woken)
            return published
        if isinstance(op, ResumeOp):
            return self._resume(conn, op, batch.transitions, now)
        if isinstance(op, FireDueOp):
            woken = self.waits.fire_due(conn, now, op.limit)
            woken += self.acquires.fire(conn, now, op.limit)
            timed = self.deadlines.sweep(conn, now, op.limit, skip=batch.leases.keys())
            batch.transitions.extend(timed.transitions)
            batch.finished_children.extend(timed.finished_children)
            started = self.events.flush_due(conn, now, op.limit)
            batch.transitions.extend(woken)
            return Fired(
                waits=len(woken), started=len(started), timed_out=timed.count, stop=timed.stop
            )
        raise TypeError(f"unknown write op {op!r}")  # pragma: no cover

    @staticmethod
    def _complete(batch: _Batch, op: CompleteOp) -> str:
        if not batch.holds(op.execution_id, op.epoch):
            # A resend of a complete that was applied before a reconnect is fine.
            return OK if batch.holds(op.execution_id, op.epoch, "completed") else STALE
        batch.complete_rows.append(
            {
                "eid": op.execution_id,
                "epoch": op.epoch,
                "result": op.result_json,
                "state": op.state_json,
                "now": batch.now,
            }
        )
        batch.leases[op.execution_id] = (op.epoch, "completed")
        batch.transitions.append(Transition(op.execution_id, "completed"))
        batch.child_finished(op.execution_id)
        return OK

    def _step_with_effects(self, batch: _Batch, op: RecordStepOp) -> WriteResult:
        """A step that also publishes an event or starts children, all in this transaction."""
        conn, now, holds = batch.conn, batch.now, batch.holds
        if not holds(op.execution_id, op.epoch):
            return STALE
        parent = batch.rows[op.execution_id]
        rejected = create_children(conn, parent, op.step.key, op.children, now)
        if rejected is not None:
            return rejected
        step = op.step
        result: WriteResult = OK
        if op.publish is not None:
            published, woken = self.events.publish(
                conn,
                PublishOp(
                    project_id=parent["project_id"],
                    topic=op.publish.topic,
                    data_json=dumps(op.publish.data),
                    idempotency_key=f"{op.execution_id}:{step.key}",
                    source_execution_id=op.execution_id,
                ),
                now,
            )
            batch.transitions.extend(woken)
            event = published.event
            step = step.model_copy(
                update={
                    "output": {
                        "id": event.id,
                        "topic": event.topic,
                        "seq": event.seq,
                        "created_at": event.created_at,
                    }
                }
            )
            result = published
        self._stage_step(
            RecordStepOp(op.execution_id, op.epoch, step),
            holds,
            batch.step_rows,
            batch.state_rows,
            now,
        )
        return result

    def _wait(self, batch: _Batch, op: WaitOp) -> WriteResult:
        if not batch.holds(op.execution_id, op.epoch):
            # A re-sent wait that was applied (and maybe already ended) before a reconnect.
            return OK if batch.holds(op.execution_id, op.epoch, "waiting", QUEUED) else STALE
        if is_acquire(op):
            return self._acquire(batch, op)
        row = batch.rows[op.execution_id]
        rejected = create_children(batch.conn, row, op.key, op.children, batch.now)
        if rejected is not None:
            return rejected
        if not self.waits.register(batch.conn, op, row, batch.now):
            return STALE
        batch.leases[op.execution_id] = (op.epoch, "waiting")
        return OK

    def _acquire(self, batch: _Batch, op: WaitOp) -> WriteResult:
        """Grant rate-limit units at once (the execution keeps running) or park until they free."""
        spec = acquire_spec(op.spec.data)
        if spec is None:
            return Rejected("invalid ctx.step.acquire request", code="invalid_value")
        conn, now = batch.conn, batch.now
        self.acquires.define(conn, batch.flow, op.project_id, spec, now)
        denied = self.flow.acquire(
            conn, batch.flow, op.project_id, spec.limit, spec.key, spec.units, op.execution_id, now
        )
        if denied is None:
            output = grant_output(spec, now)
            batch.step_rows.append(
                {
                    "execution_id": op.execution_id,
                    "key": op.key,
                    "seq": op.seq,
                    "kind": op.step_kind.value,
                    "output": output,
                    "output_type": None,
                    "error": None,
                    "state": op.state_json,
                    "attempts": 1,
                    "started_at": op.started_at,
                    "completed_at": now,
                }
            )
            return Granted(output)
        if denied.retry_at is None:
            return Rejected(denied.message, code="invalid_value")
        retry_at = denied.retry_at if spec.deadline is None else min(denied.retry_at, spec.deadline)
        parked = replace(op, spec=op.spec.model_copy(update={"expires_at": retry_at}))
        if not self.waits.register(conn, parked, batch.rows[op.execution_id], now):
            return STALE
        batch.leases[op.execution_id] = (op.epoch, "waiting")
        return OK

    def _resume(
        self, conn: Connection, op: ResumeOp, transitions: list[Transition], now: int
    ) -> Resumed:
        ex = t.executions
        row = (
            conn.execute(
                sa.select(ex).where(ex.c.id == op.execution_id, ex.c.project_id == op.project_id)
            )
            .mappings()
            .first()
        )
        if row is None:
            return Resumed(execution=None, resumed=False, message="not found")
        resumed, message, woken = self.waits.resume(
            conn,
            row,
            op.step_key,
            op.data_json,
            now,
            by=op.resumed_by,
            comment=op.comment,
            exact=op.exact,  # approval links
        )
        values = dict(row)
        if woken is not None:
            transitions.append(woken)
            values.update(status=QUEUED, available_at=now, updated_at=now)
        return Resumed(execution=execution_from_row(values), resumed=resumed, message=message)

    def _announce(
        self, conn: Connection, results: Sequence[object], transitions: Sequence[Transition]
    ) -> None:
        """Tell other orchestrators (PostgreSQL) about new work and finished executions."""
        if not self.dialect.notifies:
            return
        created = any(
            (isinstance(r, Created) and r.created) or (isinstance(r, Published) and r.triggered)
            for r in results
        )
        if created or any(t.status == QUEUED for t in transitions):
            notify(conn, self.dialect, WORK_CHANNEL)
        topics = {
            f"{r.project_id}\t{r.event.topic}"
            for r in results
            if isinstance(r, Published) and r.created and r.project_id
        }
        notify(conn, self.dialect, EVENT_CHANNEL, sorted(topics))
        done = [
            t.execution_id for t in transitions if t.status in ("completed", "failed", "cancelled")
        ]
        notify(conn, self.dialect, DONE_CHANNEL, done)

    def complete_alone(self, conn: Connection, op: CompleteOp) -> BatchOutcome | None:
        """A lone completion of a top-level execution as one autocommit statement (PostgreSQL).

        The fenced ``UPDATE`` and the ``NOTIFY``s of the general path (finished; a queue
        slot freed) in one round trip instead of five. Child executions (their parent may
        be waiting) and anything the update does not match (a stale lease, a re-sent
        completion) return ``None``: the caller then applies the op the general way.
        """
        row = conn.execute(
            self._complete_alone,
            {
                "eid": op.execution_id,
                "epoch": op.epoch,
                "result": op.result_json,
                "state": op.state_json,
                "now": now_ms(),
            },
        ).first()
        if row is None:
            return None
        return BatchOutcome(results=[OK], transitions=[Transition(op.execution_id, "completed")])

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
            status = fail(conn, op, now)
            if status == "failed":
                transitions.append(Transition(op.execution_id, "failed"))
        else:
            self.requeue(conn, [op.execution_id], outcome="released", now=now)
            status = QUEUED
        leases[op.execution_id] = (op.epoch, status)
        return OK
