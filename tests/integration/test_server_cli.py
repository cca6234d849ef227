"""``polos-server``: start banner, migrate, and clear errors for bad settings."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from polos.storage import migrations, normalize_url
from polos.testing import ServerProcess, free_port


def _server_cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "polos.cli.server", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_server_start__prints_project_api_and_ui(
    tmp_path: Path, store_kind: str, request: pytest.FixtureRequest
) -> None:
    # On SQLite, the database file must not exist before: starting creates it.
    url = (
        request.getfixturevalue("pg_url_empty")
        if store_kind == "postgres"
        else f"sqlite:///{tmp_path / 'db.sqlite'}"
    )
    server = ServerProcess(url, log_path=tmp_path / "srv.log")
    with server:
        output = server.output()
        assert "project id : default" in output
        assert f"http://127.0.0.1:{server.port}/api/v1" in output
        assert f"UI         : http://127.0.0.1:{server.port}/" in output
        ui = httpx.get(server.url + "/", timeout=5)
        assert ui.status_code == 200
        assert "Polos" in ui.text
        health = httpx.get(server.url + "/health", timeout=5).json()
        assert health["status"] == "ok"
        assert health["database"] == store_kind
    if store_kind == "sqlite":
        assert (tmp_path / "db.sqlite").exists()


def test_server_migrate__creates_schema_and_is_idempotent(empty_db_url: str) -> None:
    first = _server_cli("migrate", "--database-url", empty_db_url)
    assert first.returncode == 0, first.stderr
    latest = migrations("sqlite")[-1].version
    assert f"schema version {latest}" in first.stdout
    second = _server_cli("migrate", "--database-url", empty_db_url)
    assert second.returncode == 0, second.stderr

    engine = sa.create_engine(normalize_url(empty_db_url))
    try:
        tables = set(sa.inspect(engine).get_table_names())
        with engine.connect() as conn:
            versions = list(
                conn.scalars(sa.text("SELECT version FROM schema_migrations ORDER BY version"))
            )
    finally:
        engine.dispose()
    assert {"executions", "steps", "workers", "workflows", "projects"} <= tables
    assert versions == [m.version for m in migrations("sqlite")]


def test_server_start__unsupported_database_url_is_one_clear_line() -> None:
    result = _server_cli("start", "--database-url", "mysql://nope", "--port", str(free_port()))
    assert result.returncode != 0
    assert "unsupported database URL" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_server_migrate__unreachable_postgres_is_one_clear_line() -> None:
    port = free_port()  # nothing listens there
    result = _server_cli("migrate", "--database-url", f"postgresql://postgres@127.0.0.1:{port}/x")
    assert result.returncode != 0
    assert "error:" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_server_start__port_in_use_fails_clearly(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        started = time.monotonic()
        result = _server_cli(
            "start", "--database-url", f"sqlite:///{tmp_path / 'db.sqlite'}", "--port", str(port)
        )
        assert time.monotonic() - started < 30
    assert result.returncode != 0
    assert f"could not start on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("bad", ["-1", "70000", "http"])
def test_server_start__bad_port_is_rejected(bad: str) -> None:
    result = _server_cli("start", "--port", bad)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
