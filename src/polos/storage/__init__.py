"""The only code that touches a database: tables, migrations, the store, batched writes.

Use :func:`open_store` with a URL: ``sqlite:///path.db`` (the embedded default)
or ``postgresql://user@host/db``.
"""

from __future__ import annotations

from pathlib import Path

from polos.errors import ConfigurationError

from ._approvals import SuspendLookup, find_suspend  # approval links
from ._batcher import WriteBatcher
from ._codec import dumps, loads, new_id
from ._creates import NO_WORKFLOW
from ._errors import _safe_url
from ._keys import ADMIN, PROJECT, KeyRow, parse_token, secret_matches
from ._listen import cancel_targets
from ._metric_reads import MetricCounts
from ._migrate import Migration, migrate, migrations
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
from ._retention import EventsPruned as EventsPruned  # retention
from ._retention import ExecutionsPruned as ExecutionsPruned  # retention
from ._retention import Prunable as Prunable  # retention
from ._retention import count_prunable as count_prunable  # retention
from ._retention import prune_events as prune_events  # retention
from ._retention import prune_executions as prune_executions  # retention
from ._retries import Retried
from ._schedules import (
    FiredSlots,
    ScheduleRefused,
    ScheduleStore,
    schedule_id,
)
from ._schedules import (
    decode_cursor as decode_schedule_cursor,
)
from ._schedules import (
    encode_cursor as encode_schedule_cursor,
)
from ._schedules import (
    queue_name as schedule_queue,
)
from ._secrets import get_or_create_secret  # approval links
from ._sessions import SessionStore, SessionVersionConflict
from ._store import Store, unit_random
from ._tables import metadata
from ._trace_reads import TraceRows, executions_with_steps, trace_of  # tracing
from ._workers import WorkerIdInUse
from ._writes import CANCEL_CHANNEL, DONE_CHANNEL, EVENT_CHANNEL, KEYS_CHANNEL, WORK_CHANNEL

DEFAULT_SQLITE_PATH = Path.home() / ".polos" / "polos.db"
"""Where the embedded database lives unless told otherwise."""


def normalize_url(url: str | None) -> str:
    """Turn a user-facing database URL into the SQLAlchemy URL the store uses.

    Accepts ``sqlite:///relative.db``, ``sqlite:////abs/path.db``, a bare file
    path, ``postgresql://...`` and ``postgres://...``.
    """
    if not url:
        return f"sqlite:///{DEFAULT_SQLITE_PATH}"
    if url.startswith("sqlite+aiosqlite://"):
        return "sqlite://" + url[len("sqlite+aiosqlite://") :]
    if url.startswith(("sqlite://", "postgresql+psycopg://")):
        return url
    for prefix in ("postgresql://", "postgres://", "postgresql+asyncpg://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    if "://" not in url:
        return f"sqlite:///{Path(url).expanduser().resolve()}"
    raise ConfigurationError(
        f"unsupported database URL {url!r}: use sqlite:///path.db or postgresql://user@host/db"
    )


def describe_url(url: str) -> str:
    """The URL without its password, for logs."""
    return _safe_url(url)


async def open_store(url: str | None = None, *, run_migrations: bool = True) -> Store:
    """Connect to the database at ``url`` and (by default) migrate it."""
    full = normalize_url(url)
    if full.startswith("sqlite://"):
        from . import _sqlite

        write, read = _sqlite.create_engines(full)
        dialect = _sqlite.DIALECT
    else:
        try:
            import psycopg  # noqa: F401
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ConfigurationError(
                "PostgreSQL needs the 'postgres' extra: pip install 'polos[postgres]'"
            ) from exc
        from . import _postgres

        blocking, writes, reads = _postgres.create_engines(full)
        store = Store(
            full, blocking, blocking, _postgres.DIALECT, async_engine=writes, async_reads=reads
        )
        return await _migrated(store, run_migrations)
    store = Store(full, write, read, dialect)
    return await _migrated(store, run_migrations)


async def _migrated(store: Store, run_migrations: bool) -> Store:
    if run_migrations:
        try:
            await store.write_engine_call(lambda engine: migrate(engine, store.dialect.name))
        except Exception:
            await store.close()
            raise
    return store


__all__ = [
    "ADMIN",
    "CANCEL_CHANNEL",
    "DEFAULT_SQLITE_PATH",
    "DONE_CHANNEL",
    "EVENT_CHANNEL",
    "KEYS_CHANNEL",
    "NO_WORKFLOW",
    "OK",
    "PROJECT",
    "STALE",
    "WORK_CHANNEL",
    "BatchOutcome",
    "CancelOp",
    "Cancelled",
    "ClaimOp",
    "CompleteOp",
    "CreateExecution",
    "Created",
    "FailOp",
    "FireDueOp",
    "Fired",
    "FiredSlots",
    "Granted",
    "KeyRow",
    "MetricCounts",
    "Migration",
    "PublishOp",
    "Published",
    "RecordStepOp",
    "Rejected",
    "ReleaseOp",
    "ResumeOp",
    "Resumed",
    "Retried",
    "ScheduleRefused",
    "ScheduleStore",
    "SessionStore",
    "SessionVersionConflict",
    "Store",
    "SuspendLookup",  # approval links
    "TraceRows",
    "Transition",
    "WaitOp",
    "WorkerIdInUse",
    "WriteBatcher",
    "WriteOp",
    "WriteResult",
    "cancel_targets",
    "decode_schedule_cursor",
    "describe_url",
    "dumps",
    "encode_schedule_cursor",
    "executions_with_steps",
    "find_suspend",  # approval links
    "get_or_create_secret",  # approval links
    "loads",
    "metadata",
    "migrate",
    "migrations",
    "new_id",
    "normalize_url",
    "open_store",
    "parse_token",
    "schedule_id",
    "schedule_queue",
    "secret_matches",
    "trace_of",
    "unit_random",
]
