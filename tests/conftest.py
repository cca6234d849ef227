"""Fixtures shared by every test: fresh databases on both stores.

SQLite databases are files in the test's ``tmp_path``. PostgreSQL databases live on
the server named by ``POLOS_TEST_DATABASE_URL`` (default: the local server,
``postgresql://postgres@127.0.0.1:5432/test``); that database is only used to connect
and issue ``CREATE DATABASE``/``DROP DATABASE``, never to hold test data.

Isolation on PostgreSQL: once per session (per pytest process, so per xdist worker
too) a template database ``polos_tpl_<pid>`` is created and migrated with
``open_store``; every test that wants a database gets its own copy,
``CREATE DATABASE polos_t_<pid>_<hex> TEMPLATE polos_tpl_<pid>``, dropped ``WITH
(FORCE)`` at teardown. The template is dropped at the end of the session, and
databases left behind by killed runs on this host are dropped at the start of the next.

Without a reachable PostgreSQL, the PostgreSQL half of the suite is skipped, unless
``--require-postgres`` is given or the environment says ``CI=true`` (or
``POLOS_TEST_REQUIRE_POSTGRES=1``): then each of those tests fails.

``pytest -m "not postgres"`` runs the SQLite half alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import threading
import uuid
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"

# Per-test copies of the template: ``FILE_COPY`` copies the template's files (one
# checkpoint each); ``WAL_LOG`` (the PostgreSQL 15 default) copies block by block.
# Both take ~0.1 s here for a database this small.
CREATE_STRATEGY = "FILE_COPY"

STORE_KINDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
"""Parameters of every store-parametrized fixture; ``-m "not postgres"`` drops the second."""

_OUR_DATABASES = re.compile(r"^polos_(?:tpl|t)_(\d+)(?:_[0-9a-f]+)?$")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--require-postgres",
        action="store_true",
        default=False,
        help="fail (instead of skip) the PostgreSQL tests when PostgreSQL is unreachable; "
        "implied by CI=true or POLOS_TEST_REQUIRE_POSTGRES=1",
    )


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def postgres_required(config: pytest.Config) -> bool:
    """Whether an unreachable PostgreSQL is a failure rather than a skip."""
    return (
        bool(config.getoption("--require-postgres"))
        or _truthy(os.environ.get("CI"))
        or _truthy(os.environ.get("POLOS_TEST_REQUIRE_POSTGRES"))
    )


# ---------------------------------------------------------------------------- SQLite


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """URL of a fresh SQLite database file in the test's temporary directory."""
    return f"sqlite:///{tmp_path / 'polos.db'}"


# ---------------------------------------------------------------------------- PostgreSQL


class PostgresServer:
    """Creates and drops isolated databases on one PostgreSQL server (admin via psycopg)."""

    def __init__(self, url: str) -> None:
        from sqlalchemy.engine import make_url

        parsed = make_url(url)
        # libpq understands postgresql://, not SQLAlchemy's postgresql+driver://.
        self._base = parsed.set(drivername="postgresql")
        self.url = self.url_of(parsed.database or "postgres")
        self.template = f"polos_tpl_{os.getpid()}"
        self._template_ready = False
        self._lock = threading.Lock()

    def url_of(self, database: str) -> str:
        """The server URL with another database name."""
        return self._base.set(database=database).render_as_string(hide_password=False)

    def admin(self, sql: str) -> None:
        """Run one statement outside a transaction (CREATE/DROP DATABASE need that)."""
        import psycopg

        with psycopg.connect(self.url, autocommit=True, connect_timeout=10) as conn:
            conn.execute(sql)

    def check(self) -> None:
        """Raise ``psycopg.OperationalError`` unless the server answers."""
        import psycopg

        with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as conn:
            conn.execute("SELECT 1")

    def drop_leftovers(self) -> None:
        """Drop databases of earlier runs on this host whose pytest process is gone."""
        import psycopg

        host = self._base.host or "localhost"
        if host not in {"localhost", "127.0.0.1", "::1"} and not host.startswith("/"):
            return  # other machines may share this server: their pids mean nothing here
        with psycopg.connect(self.url, autocommit=True, connect_timeout=10) as conn:
            names = [
                row[0]
                for row in conn.execute(
                    "SELECT datname FROM pg_database WHERE datname LIKE 'polos\\_t%'"
                )
            ]
        for name in names:
            match = _OUR_DATABASES.match(name)
            if match and not _pid_alive(int(match.group(1))):
                # No FORCE: a database someone is still connected to is left alone.
                with contextlib.suppress(psycopg.Error):
                    self.admin(f'DROP DATABASE IF EXISTS "{name}"')

    def ensure_template(self) -> str:
        """The migrated template database, created on first use."""
        with self._lock:
            if not self._template_ready:
                self.admin(f'DROP DATABASE IF EXISTS "{self.template}" WITH (FORCE)')
                self.admin(f'CREATE DATABASE "{self.template}"')
                _run_in_thread(_migrate(self.url_of(self.template)))
                self._template_ready = True
        return self.template

    def create(self, *, migrated: bool = True) -> str:
        """A new database (a copy of the migrated template, or empty); its URL."""
        name = f"polos_t_{os.getpid()}_{uuid.uuid4().hex[:16]}"
        if migrated:
            template = self.ensure_template()
            self.admin(f'CREATE DATABASE "{name}" TEMPLATE "{template}" STRATEGY {CREATE_STRATEGY}')
        else:
            self.admin(f'CREATE DATABASE "{name}"')
        return self.url_of(name)

    def drop(self, url: str) -> None:
        """Drop a database made by :meth:`create`, closing whatever still uses it."""
        from sqlalchemy.engine import make_url

        name = make_url(url).database
        assert name and name.startswith("polos_t_"), url
        self.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    @contextlib.contextmanager
    def database(self, *, migrated: bool = True) -> Iterator[str]:
        """A new database for the ``with`` block; dropped afterwards."""
        url = self.create(migrated=migrated)
        try:
            yield url
        finally:
            self.drop(url)

    def close(self) -> None:
        """Drop the template (end of session)."""
        if self._template_ready:
            self.admin(f'DROP DATABASE IF EXISTS "{self.template}" WITH (FORCE)')
            self._template_ready = False


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


async def _migrate(url: str) -> None:
    from polos.storage import open_store

    store = await open_store(url)  # migrates
    await store.close()


def _run_in_thread(coro: Coroutine[Any, Any, None]) -> None:
    """``asyncio.run`` on a thread of its own: works even when a loop already runs here."""
    error: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(coro)
        except BaseException as exc:
            error.append(exc)

    thread = threading.Thread(target=target, name="polos-test-migrate")
    thread.start()
    thread.join()
    if error:
        raise error[0]


@pytest.fixture(scope="session")
def pg_server_url() -> str:
    """URL of the PostgreSQL server the tests may create databases on."""
    return os.environ.get("POLOS_TEST_DATABASE_URL") or DEFAULT_PG_URL


@pytest.fixture(scope="session")
def pg_server(pg_server_url: str, pytestconfig: pytest.Config) -> Iterator[PostgresServer]:
    """The PostgreSQL server; skips (or fails, when required) if it is unreachable."""
    import psycopg

    server = PostgresServer(pg_server_url)
    try:
        server.check()
    except psycopg.Error as exc:
        message = f"PostgreSQL at {server.url} is unreachable: {exc}".strip()
        if postgres_required(pytestconfig):
            pytest.fail(f"{message} (required: --require-postgres / CI=true)", pytrace=False)
        pytest.skip(f"{message} (set POLOS_TEST_DATABASE_URL, or start it)")
    server.drop_leftovers()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def pg_url(pg_server: PostgresServer) -> Iterator[str]:
    """URL of a fresh PostgreSQL database, already migrated (a copy of the template)."""
    with pg_server.database(migrated=True) as url:
        yield url


@pytest.fixture
def pg_url_empty(pg_server: PostgresServer) -> Iterator[str]:
    """URL of a fresh, empty PostgreSQL database (never migrated)."""
    with pg_server.database(migrated=False) as url:
        yield url


# ---------------------------------------------------------------------------- both stores


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect the PostgreSQL variant of tests marked ``sqlite_only``."""
    keep: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        on_postgres = "postgres" in (params.get("store_kind"), params.get("module_store_kind"))
        if on_postgres and item.get_closest_marker("sqlite_only"):
            dropped.append(item)
        else:
            keep.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


@pytest.fixture(params=STORE_KINDS)
def store_kind(request: pytest.FixtureRequest) -> str:
    """``"sqlite"`` or ``"postgres"``: every test using it runs once on each store."""
    return str(request.param)


@pytest.fixture(scope="module", params=STORE_KINDS)
def module_store_kind(request: pytest.FixtureRequest) -> str:
    """Like ``store_kind``, for module-scoped fixtures (one server per store per module)."""
    return str(request.param)


@pytest.fixture
def db_url(store_kind: str, request: pytest.FixtureRequest) -> str:
    """URL of a fresh database of each kind (the schema may already be there on PostgreSQL:
    ``open_store`` migrates either way)."""
    if store_kind == "postgres":
        return str(request.getfixturevalue("pg_url"))
    return str(request.getfixturevalue("sqlite_url"))


@pytest.fixture
def empty_db_url(store_kind: str, request: pytest.FixtureRequest) -> str:
    """URL of a fresh database of each kind with nothing in it (for migration tests)."""
    if store_kind == "postgres":
        return str(request.getfixturevalue("pg_url_empty"))
    return str(request.getfixturevalue("sqlite_url"))
