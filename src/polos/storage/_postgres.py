"""PostgreSQL adapter: psycopg (asyncio mode), row locks for fencing, SKIP LOCKED claims."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from ._writes import Dialect

DIALECT = Dialect(
    name="postgres",
    lock_rows=" FOR UPDATE",
    skip_locked=" FOR UPDATE SKIP LOCKED",
    notifies=True,
)


def create_engines(url: str) -> tuple[Engine, AsyncEngine, AsyncEngine]:
    """A blocking engine (migrations), a transactional engine (writes), an autocommit one (reads).

    Reads and the lone-step fast path run in autocommit: one round trip per statement
    instead of BEGIN/statement/ROLLBACK. No pre-ping (a round trip per checkout) and no
    reset on return (every use ends its own transaction): after a database restart the
    first statement on a stale connection fails, the pool is refreshed, and the caller
    retries (workers re-send, clients retry on 503).
    """
    blocking = sa.create_engine(url, pool_size=1, max_overflow=1)
    # One batched writer at a time, plus a few non-batched writes (registrations, sweeps).
    writes = create_async_engine(url, pool_size=4, max_overflow=4, pool_reset_on_return=None)
    reads = create_async_engine(
        url,
        pool_size=16,
        max_overflow=4,
        pool_reset_on_return=None,
        isolation_level="AUTOCOMMIT",
    )
    return blocking, writes, reads
