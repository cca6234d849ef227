"""Flow control in the database: queue concurrency limits, concurrency keys, rate limits.

Executions with a queue (``queue IS NOT NULL``) are claimed here; the others
take the plain claim, which needs no lock. A claim that touches queues first
locks their rows (PostgreSQL ``FOR UPDATE``, in name order) and the rows of
their rate limits, then counts what is running: two orchestrators claiming
from one queue are serialised by the queue's row, so a limit holds across
every worker and replica. SQLite has one writer at a time, so the same code
is serialised there by the write transaction itself.

Every batch takes these locks before any execution row (see
:meth:`FlowWrites.prepare`), so lock waits between batches cannot form a cycle.

Rate limits are a sliding log (``rate_usage``): a grant is a row; the units
used are the sum over the last period. That holds the limit for *every*
window of the period's length (a token bucket would allow up to twice the
limit in a window that straddles a refill).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from polos.protocol import (
    QueueSpec,
    RateLimitSpec,
    WorkflowSpec,
)

NO_KEY = ""
"""The usage key of a limit used without a key (a whole queue, or a step without ``key``)."""


def _expanding(sql: str, *names: str) -> sa.TextClause:
    # Typed, so that an empty list still compares with text on PostgreSQL.
    return sa.text(sql).bindparams(*(sa.bindparam(n, expanding=True, type_=sa.Text) for n in names))


_UPSERT_RATE_LIMIT = sa.text(
    "INSERT INTO rate_limits (project_id, name, max_units, period_ms, created_at, updated_at) "
    "VALUES (:p, :name, :max_units, :period_ms, :now, :now) ON CONFLICT (project_id, name) DO "
    "UPDATE SET max_units = excluded.max_units, period_ms = excluded.period_ms, "
    "updated_at = excluded.updated_at"
)
_UPSERT_QUEUE = sa.text(
    "INSERT INTO queues (project_id, name, concurrency_limit, per_key_limit, rate_limit, "
    "per_key_rate_limit, created_at, updated_at) VALUES (:p, :name, :concurrency_limit, "
    ":per_key_limit, :rate_limit, :per_key_rate_limit, :now, :now) "
    "ON CONFLICT (project_id, name) DO UPDATE SET concurrency_limit = excluded.concurrency_limit, "
    "per_key_limit = excluded.per_key_limit, rate_limit = excluded.rate_limit, "
    "per_key_rate_limit = excluded.per_key_rate_limit, updated_at = excluded.updated_at"
)
# The queues with runnable work for a batch's workers, with their rows (locked on
# PostgreSQL). Written so that its cost does not grow with the backlog, whatever the
# planner's statistics say: ``busy`` walks the distinct queues that have queued work
# (one index probe each, a loose index scan), then each busy queue is probed once per
# workflow the workers serve, with ``min(available_at)`` (answered by the first entry of
# ``ix_executions_queued_flow_wf``; an EXISTS here was turned into a hash join that
# read the whole backlog, ~10 ms for 30,000 queued rows).
_BUSY_QUEUES = (
    "WITH RECURSIVE busy(name) AS (SELECT (SELECT queue FROM executions "
    "WHERE project_id = :p AND status = 'queued' AND queue IS NOT NULL ORDER BY queue LIMIT 1) "
    "UNION ALL SELECT (SELECT e.queue FROM executions e WHERE e.project_id = :p "
    "AND e.status = 'queued' AND e.queue IS NOT NULL AND e.queue > busy.name "
    "ORDER BY e.queue LIMIT 1) FROM busy WHERE busy.name IS NOT NULL) "
    "SELECT q.* FROM queues q WHERE q.project_id = :p AND q.name IN (SELECT b.name FROM busy b "
    "WHERE b.name IS NOT NULL AND (SELECT 1 FROM worker_workflows ww WHERE ww.worker_id IN :workers "
    "AND (SELECT min(e.available_at) FROM executions e WHERE e.project_id = :p "
    "AND e.queue = b.name AND e.workflow_id = ww.workflow_id AND e.status = 'queued' "
    "AND e.queue IS NOT NULL) <= :now LIMIT 1) IS NOT NULL) ORDER BY q.name"
)
_RUNNING = sa.text(
    "SELECT count(*) FROM executions WHERE project_id = :p AND queue = :q AND status = 'running'"
)
# Per key, and (summed) for the whole queue, in one statement; NULL is the keyless group.
_RUNNING_BY_KEY = sa.text(
    "SELECT concurrency_key, count(*) FROM executions WHERE project_id = :p AND queue = :q "
    "AND status = 'running' GROUP BY concurrency_key"
)
_PICK_COLUMNS = "SELECT id, concurrency_key, started_at, priority, available_at FROM executions "
_PICK_WHERE = (
    "WHERE project_id = :p AND queue = :q AND status = 'queued' AND available_at <= :now "
    "AND workflow_id IN (SELECT workflow_id FROM worker_workflows WHERE worker_id = :w) "
)
_PICK_ORDER = "ORDER BY priority DESC, available_at, id LIMIT :n"
# Keyed queues are read in pages, in claim order, skipping keys already at their limit;
# a page resumes after the last row of the previous one (keyset), so each claim reads
# about as many rows as it takes.
_PICK_KEYED = _expanding(
    _PICK_COLUMNS
    + _PICK_WHERE
    + "AND (concurrency_key IS NULL OR concurrency_key NOT IN :full) AND (priority < :ap "
    "OR (priority = :ap AND (available_at > :aa OR (available_at = :aa AND id > :ai)))) "
    + _PICK_ORDER,
    "full",
)
MAX_PRIORITY = 1000
"""Highest priority the API accepts (the first keyed page starts above it)."""
_KEYED_PAGES = 5
_USED = sa.text(
    "SELECT COALESCE(SUM(units), 0) FROM rate_usage WHERE project_id = :p AND name = :name "
    "AND key = :key AND at > :since"
)
_OLDEST = sa.text(
    "SELECT at, units FROM rate_usage WHERE project_id = :p AND name = :name AND key = :key "
    "AND at > :since ORDER BY at"
)
_PRUNE = sa.text("DELETE FROM rate_usage WHERE project_id = :p AND name = :name AND at <= :since")
_GRANT = sa.text(
    "INSERT INTO rate_usage (project_id, name, key, at, units, execution_id) "
    "VALUES (:p, :name, :key, :now, :units, :eid)"
)
_SET_BLOCKED = sa.text(
    "UPDATE queues SET rate_blocked_until = :until WHERE project_id = :p AND name = :q"
)


def _rate_exhausted(queue: Mapping[Any, Any] | None, now: int) -> bool:
    """Whether a queue's whole-queue rate limit has no unit left until later."""
    if queue is None or not queue["rate_limit"] or queue["per_key_rate_limit"]:
        return False
    blocked = queue["rate_blocked_until"]
    return blocked is not None and blocked > now


def queue_specs(workflows: Iterable[WorkflowSpec]) -> list[QueueSpec]:
    """The queues declared in workflow options (``@workflow(queue=Queue(...))``), by name."""
    found: dict[str, QueueSpec] = {}
    for spec in workflows:
        raw = (spec.options or {}).get("queue")
        if isinstance(raw, dict) and raw.get("name"):
            found[raw["name"]] = QueueSpec.model_validate(raw)
    return [found[name] for name in sorted(found)]


def sync_flow(
    conn: Connection,
    project_id: str,
    workflows: Sequence[WorkflowSpec],
    rate_limits: Sequence[RateLimitSpec],
    now: int,
) -> None:
    """Record the queues and rate limits a worker declares (the last declaration wins).

    Rows are written in name order, queues before rate limits: the order claims lock them in.
    """
    queues = queue_specs(workflows)
    limits: dict[str, RateLimitSpec] = {}
    for q in queues:
        for rl in (q.rate_limit, q.per_key_rate_limit):
            if rl is not None:
                limits[rl.name] = rl
    for rl in rate_limits:
        limits[rl.name] = rl
    for q in queues:
        conn.execute(
            _UPSERT_QUEUE,
            {
                "p": project_id,
                "name": q.name,
                "concurrency_limit": q.concurrency_limit,
                "per_key_limit": q.per_key_limit,
                "rate_limit": q.rate_limit.name if q.rate_limit else None,
                "per_key_rate_limit": q.per_key_rate_limit.name if q.per_key_rate_limit else None,
                "now": now,
            },
        )
    for name in sorted(limits):
        set_rate_limit(conn, project_id, limits[name], now)


def set_rate_limit(conn: Connection, project_id: str, spec: RateLimitSpec, now: int) -> None:
    """Create or change a rate limit."""
    conn.execute(
        _UPSERT_RATE_LIMIT,
        {
            "p": project_id,
            "name": spec.name,
            "max_units": spec.limit,
            "period_ms": spec.period_ms,
            "now": now,
        },
    )


@dataclass(slots=True)
class _Window:
    """A rate limit's usage for one key, as counted in this transaction."""

    max_units: int
    period_ms: int
    used: int


@dataclass(slots=True)
class FlowLocks:
    """The flow-control rows one batch has locked, and the usage it counted."""

    queues: dict[tuple[str, str], Mapping[Any, Any]] = field(default_factory=dict)
    """(project, queue) → the queue's row."""
    limits: dict[tuple[str, str], Mapping[Any, Any]] = field(default_factory=dict)
    """(project, rate-limit name) → the rate limit's row."""
    candidates: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    """(project, worker) → queues with runnable work for the worker, in name order."""
    windows: dict[tuple[str, str, str], _Window] = field(default_factory=dict)
    pending: dict[tuple[str, str, str], int] = field(default_factory=dict)
    """Units granted to queue starts in this batch, not yet written: (project, name, key)."""


@dataclass(frozen=True, slots=True)
class Denied:
    """A rate limit cannot grant the units now (``retry_at``) or ever (``message``)."""

    retry_at: int | None
    message: str = ""


class FlowWrites:
    """Claims under queue limits, and rate-limit grants, for one dialect."""

    def __init__(self, lock_rows: str, skip_locked: str) -> None:
        self._lock_busy_queues = _expanding(_BUSY_QUEUES + lock_rows, "workers")
        self._lock_limits = _expanding(
            "SELECT * FROM rate_limits WHERE project_id = :p AND name IN :names ORDER BY name"
            + lock_rows,
            "names",
        )
        self._pick = sa.text(_PICK_COLUMNS + _PICK_WHERE + _PICK_ORDER + skip_locked)
        self._pruned_at: dict[tuple[str, str], int] = {}
        """(project, rate limit) → when this process last deleted its expired usage rows."""

    # ------------------------------------------------------------------ locks

    def prepare(
        self,
        conn: Connection,
        claims: Iterable[tuple[str, str]],
        acquires: Iterable[tuple[str, str]],
        now: int,
    ) -> FlowLocks:
        """Lock the queues with work that ``claims`` (project, worker) may take, and the rate
        limits they and ``acquires`` (project, limit name) use, each kind in name order.

        One statement per project finds and locks the queues. Every worker of a project is
        offered every queue locked for the project (its pick only sees its own workflows).
        """
        locks = FlowLocks()
        workers: dict[str, set[str]] = {}
        for project_id, worker_id in claims:
            workers.setdefault(project_id, set()).add(worker_id)
        limit_names: dict[str, set[str]] = {}
        for project_id, name in acquires:
            limit_names.setdefault(project_id, set()).add(name)
        for project_id in sorted(workers):
            rows = conn.execute(
                self._lock_busy_queues,
                {"p": project_id, "workers": sorted(workers[project_id]), "now": now},
            ).mappings()
            names = []
            for row in rows.all():
                names.append(row["name"])
                locks.queues[(project_id, row["name"])] = row
                for name in (row["rate_limit"], row["per_key_rate_limit"]):
                    if name:
                        limit_names.setdefault(project_id, set()).add(name)
            for worker_id in workers[project_id]:
                locks.candidates[(project_id, worker_id)] = names
        for project_id in sorted(limit_names):
            rows = conn.execute(
                self._lock_limits, {"p": project_id, "names": sorted(limit_names[project_id])}
            ).mappings()
            for row in rows.all():
                locks.limits[(project_id, row["name"])] = row
        return locks

    # ------------------------------------------------------------------ claims

    @staticmethod
    def lone_queue(locks: FlowLocks, project_id: str, worker_id: str) -> Mapping[Any, Any] | None:
        """The worker's only queue with work, when at most a concurrency limit applies to it
        (no keys, no rate limits): one ``UPDATE`` can then claim from it (see ``_claims``)."""
        names = locks.candidates.get((project_id, worker_id), [])
        if len(names) != 1:
            return None
        queue = locks.queues.get((project_id, names[0]))
        if queue is None or queue["per_key_limit"] is not None:
            return None
        if queue["rate_limit"] or queue["per_key_rate_limit"]:
            return None
        return queue

    def pick(
        self, conn: Connection, locks: FlowLocks, project_id: str, worker_id: str, n: int, now: int
    ) -> list[str]:
        """Choose up to ``n`` executions of limited queues for a worker, within every limit.

        The candidates of every queue are merged in claim order (priority, then FIFO);
        rate-limit units are granted, in that order, only to executions that start for
        the first time (a resumed or retried execution does not take another unit).
        """
        queues = locks.candidates.get((project_id, worker_id), [])
        if not queues or n <= 0:
            return []
        candidates: list[tuple[Any, Mapping[Any, Any] | None]] = []
        looked_at = []
        for name in queues:
            queue = locks.queues.get((project_id, name))
            if _rate_exhausted(queue, now):
                continue  # the whole queue waits for units (the dispatcher wakes on time)
            looked_at.append(name)
            keyed = queue is not None and queue["per_key_limit"] is not None
            by_key: dict[str | None, int] = {}
            room = n
            if keyed:
                counts = conn.execute(_RUNNING_BY_KEY, {"p": project_id, "q": name}).all()
                by_key = {k: int(c) for k, c in counts}
            if queue is not None and queue["concurrency_limit"] is not None:
                running = (
                    sum(by_key.values())
                    if keyed
                    else conn.execute(_RUNNING, {"p": project_id, "q": name}).scalar_one()
                )
                room = min(n, queue["concurrency_limit"] - int(running))
            if room <= 0:
                continue
            params: dict[str, Any] = {
                "p": project_id,
                "q": name,
                "now": now,
                "w": worker_id,
                "n": room,
            }
            if queue is not None and keyed:
                rows = self._pick_keyed(conn, params, queue["per_key_limit"], by_key)
            else:
                rows = list(conn.execute(self._pick, params).all())
            candidates.extend((row, queue) for row in rows)
        candidates.sort(key=lambda c: (-c[0].priority, c[0].available_at, c[0].id))
        chosen: list[str] = []
        blocked: dict[str, list[int]] = {}
        for row, queue in candidates:
            if len(chosen) >= n:
                break
            if queue is not None and (queue["rate_limit"] or queue["per_key_rate_limit"]):
                retry_at = self._rate_units(conn, locks, project_id, queue, row, now)
                if retry_at is not None:
                    blocked.setdefault(queue["name"], []).append(retry_at)
                    continue
            chosen.append(row.id)
        self.flush(conn, locks, now)
        self._mark_blocked(conn, locks, project_id, looked_at, blocked)
        return chosen

    @staticmethod
    def _pick_keyed(
        conn: Connection, params: dict[str, Any], key_limit: int, by_key: Mapping[str | None, int]
    ) -> list[Any]:
        running = {k: c for k, c in by_key.items() if k is not None}
        full = {k for k, c in running.items() if c >= key_limit}
        room, taken = params["n"], []
        after = (MAX_PRIORITY + 1, 0, "")
        page = max(2 * room, 20)
        for _ in range(_KEYED_PAGES):
            rows = conn.execute(
                _PICK_KEYED,
                {
                    **params,
                    "n": page,
                    "full": sorted(full),
                    "ap": after[0],
                    "aa": after[1],
                    "ai": after[2],
                },
            ).all()
            for row in rows:
                key = row.concurrency_key
                if key is not None and running.get(key, 0) >= key_limit:
                    full.add(key)
                    continue
                if key is not None:
                    running[key] = running.get(key, 0) + 1
                taken.append(row)
                if len(taken) >= room:
                    return taken
            if len(rows) < page:
                break
            last = rows[-1]
            after = (last.priority, last.available_at, last.id)
        return taken

    def _rate_units(
        self,
        conn: Connection,
        locks: FlowLocks,
        project_id: str,
        queue: Mapping[Any, Any],
        row: Any,
        now: int,
    ) -> int | None:
        """Take the units a first start needs; None if granted, else when to try again."""
        if row.started_at is not None:  # not a first start: no unit needed
            return None
        needs = [(queue["rate_limit"], NO_KEY)] if queue["rate_limit"] else []
        if queue["per_key_rate_limit"]:
            needs.append((queue["per_key_rate_limit"], row.concurrency_key or NO_KEY))
        denials = [
            d
            for name, key in needs
            if (d := self._check(conn, locks, project_id, name, key, 1, now)) is not None
        ]
        if denials:
            # A limit that is gone or smaller than 1 unit cannot block forever: recheck soon.
            return min(d.retry_at if d.retry_at is not None else now + 1000 for d in denials)
        for name, key in needs:
            self._take(conn, locks, project_id, name, key, 1, None, now)
        return None

    @staticmethod
    def _mark_blocked(
        conn: Connection,
        locks: FlowLocks,
        project_id: str,
        queues: Sequence[str],
        blocked: Mapping[str, Sequence[int]],
    ) -> None:
        """Record on each queue when its rate limit frees units again (or that it has)."""
        for name in queues:
            queue = locks.queues.get((project_id, name))
            if queue is None or not (queue["rate_limit"] or queue["per_key_rate_limit"]):
                continue
            until = min(blocked[name]) if name in blocked else None
            if until != queue["rate_blocked_until"]:
                conn.execute(_SET_BLOCKED, {"until": until, "p": project_id, "q": name})

    # ------------------------------------------------------------------ rate limits

    def _window(
        self, conn: Connection, locks: FlowLocks, project_id: str, name: str, key: str, now: int
    ) -> _Window | None:
        cached = locks.windows.get((project_id, name, key))
        if cached is not None:
            return cached
        limit = locks.limits.get((project_id, name))
        if limit is None:
            return None
        since = now - limit["period_ms"]
        # Rows older than the window no longer count (``_USED`` reads from ``since``):
        # deleting them is housekeeping, done at most once per period (and per second).
        last = self._pruned_at.get((project_id, name))
        if last is None or now - last >= max(1000, limit["period_ms"]):
            conn.execute(_PRUNE, {"p": project_id, "name": name, "since": since})
            self._pruned_at[(project_id, name)] = now
        used = conn.execute(
            _USED, {"p": project_id, "name": name, "key": key, "since": since}
        ).scalar_one()
        window = _Window(limit["max_units"], limit["period_ms"], int(used))
        locks.windows[(project_id, name, key)] = window
        return window

    def _check(
        self,
        conn: Connection,
        locks: FlowLocks,
        project_id: str,
        name: str,
        key: str,
        units: int,
        now: int,
    ) -> Denied | None:
        """None if ``units`` can be granted now; else when they can (or why never)."""
        window = self._window(conn, locks, project_id, name, key, now)
        if window is None:
            return Denied(None, f"rate limit {name!r} is not defined in project {project_id!r}")
        if units > window.max_units:
            return Denied(
                None,
                f"{units} units can never be granted by rate limit {name!r} "
                f"({window.max_units} per {window.period_ms / 1000:g} s)",
            )
        if window.used + units <= window.max_units:
            return None
        # Units leave the window oldest first: when have enough of them left?
        excess = window.used + units - window.max_units
        since = now - window.period_ms
        freed = 0
        for at, granted in conn.execute(
            _OLDEST, {"p": project_id, "name": name, "key": key, "since": since}
        ).all():
            freed += granted
            if freed >= excess:
                return Denied(int(at) + window.period_ms + 1)
        return Denied(now + window.period_ms)  # granted in this transaction: a full period

    def _take(
        self,
        conn: Connection,
        locks: FlowLocks,
        project_id: str,
        name: str,
        key: str,
        units: int,
        execution_id: str | None,
        now: int,
    ) -> None:
        """Count ``units`` as granted now; queue starts' grants are written by :meth:`flush`
        as one row per limit and key (a claim of 50 starts writes one row, not 50)."""
        window = self._window(conn, locks, project_id, name, key, now)
        assert window is not None
        window.used += units
        if execution_id is None:
            slot = (project_id, name, key)
            locks.pending[slot] = locks.pending.get(slot, 0) + units
            return
        conn.execute(
            _GRANT,
            {
                "p": project_id,
                "name": name,
                "key": key,
                "now": now,
                "units": units,
                "eid": execution_id,
            },
        )

    @staticmethod
    def flush(conn: Connection, locks: FlowLocks, now: int) -> None:
        """Write the grants :meth:`_take` collected."""
        if locks.pending:
            conn.execute(
                _GRANT,
                [
                    {"p": p, "name": name, "key": key, "now": now, "units": units, "eid": None}
                    for (p, name, key), units in sorted(locks.pending.items())
                ],
            )
            locks.pending.clear()

    def acquire(
        self,
        conn: Connection,
        locks: FlowLocks,
        project_id: str,
        name: str,
        key: str,
        units: int,
        execution_id: str,
        now: int,
    ) -> Denied | None:
        """Grant ``units`` of rate limit ``name`` (locked in ``locks``) now, or say when."""
        denied = self._check(conn, locks, project_id, name, key, units, now)
        if denied is None:
            self._take(conn, locks, project_id, name, key, units, execution_id, now)
        return denied
