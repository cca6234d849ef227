"""SQLite adapter: WAL, full fsync on commit, busy timeout, foreign keys, BEGIN IMMEDIATE writes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine

from ._writes import Dialect

DIALECT = Dialect(name="sqlite", lock_rows="", skip_locked="")


_SYNCHRONOUS = frozenset({"OFF", "NORMAL", "FULL", "EXTRA"})


def _configure(engine: Engine, *, immediate: bool, synchronous: str) -> None:
    # limits: PRAGMA takes no bound parameter, so the value is one of SQLite's keywords.
    if synchronous not in _SYNCHRONOUS:
        raise ValueError(f"PRAGMA synchronous must be one of {sorted(_SYNCHRONOUS)}")

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let the "begin" event below decide how transactions start.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit is on disk before it is acknowledged (survives power loss, not only kill -9).
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # IMMEDIATE takes the write lock up front, so a read-then-write transaction
        # can never fail half-way with SQLITE_BUSY (the fencing check relies on it).
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def sqlite_file(url: str) -> Path | None:
    """The file behind a ``sqlite:///`` URL (``None`` for in-memory)."""
    path = url.split(":///", 1)[1] if ":///" in url else ""
    if not path or path == ":memory:":
        return None
    return Path(path)


def create_engines(url: str, *, synchronous: str = "FULL") -> tuple[Engine, Engine]:
    """A single-connection write engine and a small read pool over the same file."""
    path = sqlite_file(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    connect_args = {"check_same_thread": False, "timeout": 30}
    # One writer connection: all writes are serialised (and batched) by the orchestrator anyway.
    write = sa.create_engine(
        url, pool_size=1, max_overflow=0, pool_timeout=60, connect_args=connect_args
    )
    _configure(write, immediate=True, synchronous=synchronous)
    read = sa.create_engine(
        url, pool_size=4, max_overflow=4, pool_timeout=60, connect_args=connect_args
    )
    _configure(read, immediate=False, synchronous=synchronous)
    return write, read
