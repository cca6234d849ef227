"""Small helpers shared by the benchmark drivers."""

from __future__ import annotations

import contextlib
import sqlite3
import statistics
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

HERE = Path(__file__).resolve().parent
WORKERS = HERE / "workers"

STORES = ("sqlite", "postgres")
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


class Store:
    """Where a scenario's databases live: fresh SQLite files, or fresh PostgreSQL databases.

    ``fresh(folder, name)`` yields the URL of a new, empty database and removes it
    afterwards (PostgreSQL: ``CREATE DATABASE <name>_<uuid>`` on the admin connection,
    ``DROP DATABASE ... WITH (FORCE)`` at the end; SQLite: a new file in ``folder``, which
    run.py removes with its temporary directory).
    """

    def __init__(self, kind: str, pg_url: str = DEFAULT_PG_URL) -> None:
        if kind not in STORES:
            raise ValueError(f"unknown store {kind!r}")
        self.kind = kind
        self.pg_url = pg_url  # any existing database: the admin connection runs there

    def __str__(self) -> str:
        return self.kind

    def _pg_admin(self) -> Any:
        import psycopg

        return psycopg.connect(self.pg_url, autocommit=True)

    def _pg_url_for(self, database: str) -> str:
        parts = urlsplit(self.pg_url)
        return urlunsplit(parts._replace(path="/" + database))

    def check(self) -> str:
        """Fail early (with a hint) if the store is unusable; returns its version."""
        if self.kind == "sqlite":
            return sqlite3.sqlite_version
        try:
            with self._pg_admin() as conn:
                row = conn.execute("SHOW server_version").fetchone()
        except Exception as exc:
            raise SystemExit(
                f"PostgreSQL at {self.pg_url} is not reachable ({exc}); start it, pass "
                "--pg-url, or use --store sqlite"
            ) from exc
        return str(row[0])

    def settings(self) -> dict[str, str]:
        """Server settings that decide what a commit costs (PostgreSQL only)."""
        if self.kind != "postgres":
            return {}
        names = (
            "synchronous_commit",
            "fsync",
            "wal_sync_method",
            "commit_delay",
            "max_connections",
        )
        with self._pg_admin() as conn:
            return {n: str(conn.execute(f"SHOW {n}").fetchone()[0]) for n in names}

    @contextlib.contextmanager
    def fresh(self, folder: Path, name: str) -> Iterator[str]:
        """A new empty database for ``name`` (``polos-latency``, ``dbos-crash-0``, ...)."""
        if self.kind == "sqlite":
            yield f"sqlite:///{folder / (name + '.db')}"
            return
        prefix = "dbos" if name.startswith("dbos") else "polos"
        database = f"{prefix}_bench_{uuid.uuid4().hex[:16]}"
        with self._pg_admin() as conn:
            conn.execute(f'CREATE DATABASE "{database}"')
        try:
            yield self._pg_url_for(database)
        finally:
            with self._pg_admin() as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')

    def query(self, url: str, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run a read-only query (``?`` placeholders) on a database made by :meth:`fresh`."""
        if self.kind == "sqlite":
            path = url.removeprefix("sqlite:///")
            with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
                return conn.execute(sql, params).fetchall()
        import psycopg

        with psycopg.connect(url) as conn:
            return conn.execute(sql.replace("?", "%s"), params).fetchall()


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100), linear interpolation between closest ranks."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    if len(ordered) == 1:
        return ordered[0]
    pos = (len(ordered) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def latency_summary(runs: Sequence[Sequence[float]]) -> dict[str, float | int]:
    """Per-step latency of ``runs`` (each a list of per-step durations in seconds).

    ``median_ms``: median over runs of each run's median step time;
    ``p90_ms``: 90th percentile over all individual step timings.
    """
    per_run = [statistics.median(r) for r in runs]
    flat = [x for r in runs for x in r]
    return {
        "runs": len(runs),
        "steps": len(flat),
        "median_ms": statistics.median(per_run) * 1000,
        "p90_ms": percentile(flat, 90) * 1000,
        "mean_ms": statistics.fmean(flat) * 1000,
    }


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.001) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def read_started(path: Path) -> list[tuple[int, float]]:
    """``(pid, time.time())`` lines written by the blocking step of the crash workflow."""
    if not path.exists():
        return []
    lines: list[tuple[int, float]] = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2:
            lines.append((int(parts[0]), float(parts[1])))
    return lines
