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
from typing import TYPE_CHECKING, TypeGuard, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from polos.protocol import (
    ApiKeyInfo,
    Event,
    Execution,
    ProjectInfo,
    QueueList,
    RateLimitSpec,
    StepRecord,
    WaitInfo,
    WorkerInfo,
    WorkflowInfo,
    WorkflowSpec,
    now_ms,
)

from . import _event_reads, _keys
from . import _tables as t
from ._codec import execution_from_row, step_from_row
from ._errors import translate_errors
from ._flow import set_rate_limit
from ._flow_reads import list_queues
from ._lifecycle import RUNNING
from ._listen import cancel_items, listen_forever
from ._metric_reads import MetricCounts, metric_counts  # /metrics (observability)
from ._ops import (
    BatchOutcome,
    CompleteOp,
    RecordStepOp,
    Transition,
    WriteOp,
)
from ._retries import Retried, retry
from ._schedules import ScheduleStore
from ._sessions import SessionStore
from ._workers import Registration, register, workers_of, workflows_of
from ._writes import CANCEL_CHANNEL, KEYS_CHANNEL, WORK_CHANNEL, Dialect, Writes, notify

if TYPE_CHECKING:  # the asyncio engine is only used (and greenlet only needed) for PostgreSQL
    from sqlalchemy.ext.asyncio import AsyncEngine

T = TypeVar("T")


# Built once: SQLAlchemy then finds the compiled form in its cache instead of rebuilding it.
_SELECT_EXECUTION = sa.select(t.executions).where(
    t.executions.c.id == sa.bindparam("id"), t.executions.c.project_id == sa.bindparam("project_id")
)
_NEXT_AVAILABLE = sa.text(
    "SELECT MIN(x) FROM (SELECT MIN(available_at) AS x FROM executions "
    "WHERE status = 'queued' AND available_at > :after UNION ALL "
    "SELECT MIN(rate_blocked_until) AS x FROM queues WHERE rate_blocked_until > :after) u"
)
_SELECT_STEPS = (
    sa.select(t.steps).where(t.steps.c.execution_id == sa.bindparam("id")).order_by(t.steps.c.seq)
)


class Store:
    """All database access of the orchestrator."""

    def __init__(
        self,
        url: str,
        write_engine: Engine,
        read_engine: Engine,
        dialect: Dialect,
        *,
        async_engine: AsyncEngine | None = None,
        async_reads: AsyncEngine | None = None,
    ) -> None:
        self.url = url
        self.dialect = dialect
        self._writes = Writes(dialect)
        self._write_engine = write_engine
        self._read_engine = read_engine
        # How statements run, measured on this project's machine:
        # * a local SQLite file: inline on the event loop (a writer thread made every batch
        #   wait for the GIL; aiosqlite cost ~1.4 ms per transaction in thread hops);
        # * PostgreSQL: psycopg's native asyncio mode, our sync query code run over
        #   SQLAlchemy's greenlet bridge (no threads, no blocking on network round trips).
        self._async_engine = async_engine
        self._async_reads = async_reads or async_engine
        self._migrator = ThreadPoolExecutor(1, thread_name_prefix="polos-db-migrate")
        self.schedules = ScheduleStore(self)
        """Cron schedules: create, change, trigger, fire due slots."""
        self.sessions = SessionStore(self)
        """Agent session memory: get, save with a version check, list, delete."""

    # ------------------------------------------------------------------ plumbing

    async def close(self) -> None:
        """Dispose of every pooled connection."""
        if self._async_engine is not None:
            await self._async_engine.dispose()
        if self._async_reads is not None and self._async_reads is not self._async_engine:
            await self._async_reads.dispose()
        self._write_engine.dispose()
        if self._read_engine is not self._write_engine:
            self._read_engine.dispose()
        self._migrator.shutdown(wait=False)

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
        """Run ``fn(engine)`` on a thread with a blocking engine (migrations, start-up only)."""
        return await asyncio.get_running_loop().run_in_executor(
            self._migrator, self._with_engine, fn
        )

    async def write(self, fn: Callable[[Connection], T]) -> T:
        """Run ``fn`` in one write transaction."""
        if self._async_engine is None:
            return self._in_write_tx(fn)
        with translate_errors(self.url):
            async with self._async_engine.begin() as conn:
                return await conn.run_sync(fn)

    async def read(self, fn: Callable[[Connection], T]) -> T:
        """Run ``fn`` on a read connection."""
        if self._async_reads is None:
            return self._in_read(fn)
        with translate_errors(self.url):
            async with self._async_reads.connect() as conn:
                return await conn.run_sync(fn)

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
        rate_limits: Sequence[RateLimitSpec] = (),
    ) -> list[str]:
        """Record a (re)connecting worker and the workflows it serves.

        ``active`` maps the executions the worker says it still runs to their
        epochs. Returns those it no longer owns (to abandon). Executions the
        database assigns to this worker but that it did not list were lost by
        the worker: they are requeued as crashed.
        """
        now = now_ms()

        def go(conn: Connection) -> list[str]:
            registration = Registration(
                project_id, worker_id, name, hostname, pid, orchestrator_id, max_concurrent
            )
            return register(
                conn, self._writes, registration, workflows, active, rate_limits, lease_ms, now
            )

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

    async def extend_leases_of(self, orchestrator_id: str, lease_ms: int) -> None:
        """Start-up grace: the workers attached to this orchestrator's previous run get a fresh
        lease to reconnect before their executions are requeued."""
        until = now_ms() + lease_ms

        def go(conn: Connection) -> None:
            conn.execute(
                t.workers.update()
                .where(
                    t.workers.c.status == "connected",
                    t.workers.c.orchestrator_id == orchestrator_id,
                    t.workers.c.lease_expires_at < until,
                )
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
            return self._writes.requeue(
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

    async def list_workers(self, project_id: str) -> list[WorkerInfo]:
        """Known workers of a project, most recently connected first."""

        def go(conn: Connection) -> list[WorkerInfo]:
            return workers_of(conn, project_id)

        return await self.read(go)

    async def list_workflows(self, project_id: str) -> list[WorkflowInfo]:
        """Workflows registered in a project."""

        def go(conn: Connection) -> list[WorkflowInfo]:
            return workflows_of(conn, project_id)

        return await self.read(go)

    # ------------------------------------------------------------------ reads

    async def get_execution(self, project_id: str, execution_id: str) -> Execution | None:
        """One execution of a project, or ``None``."""

        def go(conn: Connection) -> Execution | None:
            row = (
                conn.execute(_SELECT_EXECUTION, {"id": execution_id, "project_id": project_id})
                .mappings()
                .first()
            )
            return execution_from_row(row) if row is not None else None

        return await self.read(go)

    async def listen(
        self, handlers: Mapping[str, Callable[[str], None]], on_connect: Callable[[], None]
    ) -> None:
        """Hear other orchestrators' changes (PostgreSQL); returns at once on SQLite."""
        if not self.dialect.notifies:
            return
        await listen_forever(self.url, handlers, on_connect)

    async def notify_cancel(self, targets: Sequence[tuple[str, str, str]]) -> None:
        """Ask whichever orchestrators hold the workers' sockets to stop these executions.

        ``targets``: (worker id, execution id, reason), sent in one transaction.
        """
        if not self.dialect.notifies or not targets:
            return
        items = cancel_items(targets)
        await self.write(lambda conn: notify(conn, self.dialect, CANCEL_CHANNEL, items))

    async def finished_among(self, ids: Sequence[str]) -> list[str]:
        """Which of ``ids`` have finished (a safety net for missed notifications)."""
        if not ids:
            return []

        def go(conn: Connection) -> list[str]:
            rows = conn.execute(
                sa.select(t.executions.c.id).where(
                    t.executions.c.id.in_(list(ids)),
                    t.executions.c.status.in_(["completed", "failed", "cancelled"]),
                )
            )
            return [r.id for r in rows.all()]

        return await self.read(go)

    async def get_executions(self, project_id: str, ids: Sequence[str]) -> dict[str, Execution]:
        """The executions of a project among ``ids`` (unknown ids are absent)."""

        def go(conn: Connection) -> dict[str, Execution]:
            rows = conn.execute(
                sa.select(t.executions).where(
                    t.executions.c.project_id == project_id, t.executions.c.id.in_(list(ids))
                )
            ).mappings()
            return {r["id"]: execution_from_row(r) for r in rows.all()}

        return await self.read(go)

    async def list_steps(self, execution_id: str) -> list[StepRecord]:
        """An execution's step log in recording order."""

        def go(conn: Connection) -> list[StepRecord]:
            rows = conn.execute(_SELECT_STEPS, {"id": execution_id}).mappings()
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
        created_after: int | None = None,
        created_before: int | None = None,
        id_prefix: str | None = None,
        parent_id: str | None = None,
        root_id: str | None = None,
        top_level: bool = False,
    ) -> tuple[list[Execution], tuple[int, str] | None]:
        """A page of executions, newest first, and the cursor of the next page.

        ``created_after`` / ``created_before`` bound ``created_at`` (epoch ms, inclusive /
        exclusive); ``id_prefix`` matches ids starting with it (a whole id matches itself);
        ``top_level`` keeps executions without a parent. Every filter is served by an index
        (project + created, status, workflow; parent; root; the primary key for ids).
        """
        ex = t.executions
        query = sa.select(ex).where(ex.c.project_id == project_id)
        status_list = list(statuses)
        if status_list:
            query = query.where(ex.c.status.in_(status_list))
        if workflow_id is not None:
            query = query.where(ex.c.workflow_id == workflow_id)
        if created_after is not None:
            query = query.where(ex.c.created_at >= created_after)
        if created_before is not None:
            query = query.where(ex.c.created_at < created_before)
        if id_prefix and len(id_prefix) >= _WHOLE_ID:
            query = query.where(ex.c.id == id_prefix)  # a pasted id: one primary-key lookup
        elif id_prefix:
            # A range on the primary key (LIKE would not use it on every database).
            query = query.where(ex.c.id >= id_prefix, ex.c.id < id_prefix + "\U0010ffff")
        if parent_id is not None:
            query = query.where(ex.c.parent_id == parent_id)
        if root_id is not None:
            query = query.where(ex.c.root_id == root_id)
        if top_level:
            query = query.where(ex.c.parent_id.is_(None))
        if cursor is not None:
            created, last_id = cursor
            # A row-value comparison: an index range on (created_at, id), where the
            # equivalent OR makes some planners scan.
            query = query.where(sa.tuple_(ex.c.created_at, ex.c.id) < (created, last_id))
        query = query.order_by(ex.c.created_at.desc(), ex.c.id.desc()).limit(limit + 1)

        def go(conn: Connection) -> tuple[list[Execution], tuple[int, str] | None]:
            rows = (conn.execute(query)).mappings().all()
            items = [execution_from_row(r) for r in rows[:limit]]
            next_cursor = (items[-1].created_at, items[-1].id) if len(rows) > limit else None
            return items, next_cursor

        return await self.read(go)

    async def next_available_at(self, after: int) -> int | None:
        """Earliest ``available_at`` later than ``after`` among queued executions.

        That is when an execution waiting out a retry backoff becomes runnable
        (served by the partial index ``ix_executions_queued_due``), or when a queue
        whose rate limit ran out has units again.
        """

        def go(conn: Connection) -> int | None:
            value = conn.scalar(_NEXT_AVAILABLE, {"after": after})
            return int(value) if value is not None else None

        return await self.read(go)

    # ------------------------------------------------------------------ events and waits

    async def list_events(
        self, project_id: str, topic: str, *, after: int = 0, limit: int = 100
    ) -> list[Event]:
        """Events of a topic with ``seq > after``, oldest first."""
        return await self.read(
            lambda conn: _event_reads.list_events(conn, project_id, topic, after, limit)
        )

    async def last_seq(self, project_id: str, topic: str) -> int:
        """The topic's last seq (0 if nothing was published on it)."""
        return await self.read(lambda conn: _event_reads.last_seq(conn, project_id, topic))

    async def list_waits(
        self,
        project_id: str,
        *,
        kind: str | None = None,
        workflow_id: str | None = None,
        limit: int = 50,
        cursor: tuple[int, str, str] | None = None,
    ) -> tuple[list[WaitInfo], tuple[int, str, str] | None]:
        """A page of parked executions, oldest wait first, and the next page's cursor."""
        return await self.read(
            lambda conn: _event_reads.list_waits(
                conn, project_id, kind=kind, workflow_id=workflow_id, limit=limit, cursor=cursor
            )
        )

    async def list_queues(self, project_id: str) -> QueueList:
        """A project's queues (limits, running / queued / waiting counts) and rate limits."""
        now = now_ms()
        return await self.read(lambda conn: list_queues(conn, project_id, now))

    # --- metrics (observability): scrape-time counts, see _metric_reads.py
    async def metric_counts(self) -> MetricCounts:
        """Executions by (project, status) and queue depth, for ``/metrics``."""
        now = now_ms()
        return await self.read(lambda conn: metric_counts(conn, now))

    # --- end metrics

    # ------------------------------------------------------------------ projects and API keys

    async def create_api_key(
        self, project_id: str | None, name: str, role: str = _keys.PROJECT
    ) -> tuple[ApiKeyInfo, str]:
        """A new key and its token (the only time the token exists; only its hash is kept)."""
        now = now_ms()
        return await self.write(lambda conn: _keys.create_key(conn, project_id, name, role, now))

    async def find_api_key(self, key_id: str) -> _keys.KeyRow | None:
        """A key by id, with its hash (for authentication), revoked or not."""
        return await self.read(lambda conn: _keys.find_key(conn, key_id))

    async def list_api_keys(self, project_id: str | None = None) -> list[ApiKeyInfo]:
        """Keys of a project (``None``: all), newest first."""
        return await self.read(lambda conn: _keys.list_keys(conn, project_id))

    async def revoke_api_key(self, key_id: str) -> ApiKeyInfo | None:
        """Revoke a key; tells other orchestrators at once (PostgreSQL NOTIFY)."""
        now = now_ms()

        def go(conn: Connection) -> ApiKeyInfo | None:
            info = _keys.revoke_key(conn, key_id, now)
            if info is not None:
                notify(conn, self._writes.dialect, KEYS_CHANNEL, [key_id])
            return info

        return await self.write(go)

    async def touch_api_key(self, key_id: str) -> None:
        """Record that a key was used now."""
        now = now_ms()
        await self.write(lambda conn: _keys.touch_key(conn, key_id, now))

    async def count_admin_keys(self) -> int:
        """Admin keys that are not revoked."""
        return await self.read(_keys.count_admin_keys)

    async def create_project(self, project_id: str, name: str) -> ProjectInfo | None:
        """A new project (``None``: the id is taken)."""
        now = now_ms()
        return await self.write(
            lambda conn: _keys.create_project(conn, project_id, name or project_id, now)
        )

    async def list_projects(self) -> list[ProjectInfo]:
        """Every project."""
        return await self.read(_keys.list_projects)

    async def retry_execution(self, project_id: str, execution_id: str, by: str) -> Retried:
        """Queue a failed or cancelled top-level execution again (see ``_retries.retry``)."""
        now = now_ms()

        def go(conn: Connection) -> Retried:
            retried = retry(conn, project_id, execution_id, by, now)
            if retried.refused is None:
                notify(conn, self._writes.dialect, WORK_CHANNEL)  # other orchestrators' workers
            return retried

        return await self.write(go)

    async def set_rate_limit(self, project_id: str, spec: RateLimitSpec) -> None:
        """Create or change a rate limit."""
        now = now_ms()
        await self.write(lambda conn: set_rate_limit(conn, project_id, spec, now))

    async def next_due(self) -> int | None:
        """When the next timer, wait timeout or trigger batch falls due (epoch ms)."""
        return await self.read(_event_reads.next_due)

    # ------------------------------------------------------------------ batched writes

    async def _alone(self, op: RecordStepOp | CompleteOp) -> BatchOutcome | None:
        """Apply one op as one autocommit statement (``None``: apply it the general way)."""
        assert self._async_reads is not None  # the autocommit engine
        with translate_errors(self.url):
            async with self._async_reads.connect() as conn:
                if isinstance(op, CompleteOp):
                    return await conn.run_sync(lambda c: self._writes.complete_alone(c, op))
                return await conn.run_sync(lambda c: self._writes.record_step_alone(c, op))

    async def apply_batch(self, ops: Sequence[WriteOp]) -> BatchOutcome:
        """Apply ``ops`` in one transaction; if that fails, apply each alone.

        Isolation keeps one bad op (a constraint violation, say) from failing
        the writes of unrelated executions that happened to share its batch.
        """
        lone = ops[0] if len(ops) == 1 else None
        if self._async_engine is not None and lone is not None and _goes_alone(lone):
            # The common case under light load: one step record or completion, over a network.
            try:
                done = await self._alone(lone)
            except Exception as exc:
                return BatchOutcome(results=[exc])
            if done is not None:
                return done
        try:
            return await self.write(lambda conn: self._writes.apply(conn, ops))
        except Exception as exc:
            if len(ops) == 1:
                return BatchOutcome(results=[exc])
        outcome = BatchOutcome(results=[])
        for op in ops:
            try:
                single = await self.write(lambda conn, op=op: self._writes.apply(conn, [op]))  # type: ignore[misc]
                outcome.results.extend(single.results)
                outcome.transitions.extend(single.transitions)
            except Exception as exc:
                outcome.results.append(exc)
        return outcome


_WHOLE_ID = 36
"""Length of an execution id (a UUID): a search this long is a lookup, not a prefix."""


def _goes_alone(op: WriteOp) -> TypeGuard[RecordStepOp | CompleteOp]:
    """Whether ``op`` has a one-statement form (``Writes.record_step_alone`` / ``complete_alone``)."""
    if isinstance(op, RecordStepOp):
        return not op.step.has_state and op.publish is None and not op.children
    return isinstance(op, CompleteOp)


def unit_random() -> float:
    """A uniform number in [0, 1) for retry jitter."""
    return random.random()
