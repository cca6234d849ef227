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
    inline=False,
    notifies=True,
)


def create_engines(url: str, *, pool_size: int = 10) -> tuple[Engine, AsyncEngine]:
    """A small blocking engine (migrations) and the async engine everything else uses.

    No pre-ping: it costs a round trip per transaction. After a database restart the first
    statement on each stale connection fails (the pool is then refreshed) and is retried by
    its caller: workers re-send, clients retry on 503.
    """
    blocking = sa.create_engine(url, pool_size=1, max_overflow=1)
    # Every use ends its transaction (engine.begin() or a read that rolls back), so the
    # pool need not send another ROLLBACK when a connection is returned.
    engine = create_async_engine(
        url, pool_size=pool_size, max_overflow=pool_size, pool_reset_on_return=None
    )
    return blocking, engine
