"""PostgreSQL adapter: psycopg pool, row locks for fencing, SKIP LOCKED claims."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ._writes import Dialect

DIALECT = Dialect(
    name="postgres",
    lock_rows=" FOR UPDATE",
    skip_locked=" FOR UPDATE SKIP LOCKED",
    inline=False,
    notifies=True,
)


def create_engines(url: str, *, pool_size: int = 10) -> tuple[Engine, Engine]:
    """One pooled engine used for both reads and writes."""
    engine = sa.create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)
    return engine, engine
