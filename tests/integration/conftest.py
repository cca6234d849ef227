"""Fixtures for end-to-end tests with real processes: an orchestrator and worker scripts.

Every process logs to a file in the test's ``tmp_path``; when a test fails, the logs
are printed at teardown (pytest shows them under "Captured stdout teardown").
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
import pytest

from polos import PolosClient
from polos.testing._processes import ServerProcess, WorkerProcess

if TYPE_CHECKING:
    from tests.conftest import PostgresServer

SQLITE_ONLY = pytest.mark.sqlite_only
"""Run a ``store_kind`` test on SQLite only (``tests/conftest.py`` deselects the rest). For tests whose subject sits above the store
(CLI output, link signing, the OTLP exporter, input validation): the store behaviour they
touch is tested on both stores by the API, store and end-to-end tests, and running them
twice would only cost suite time."""

T = TypeVar("T")

WORKERS_DIR = Path(__file__).parent / "workers"
STEPS_WORKER = WORKERS_DIR / "steps_worker.py"


# ---------------------------------------------------------------------- polling helpers


def wait_until(
    condition: Callable[[], Any], timeout: float = 20.0, interval: float = 0.02, what: str = ""
) -> Any:
    """Poll ``condition`` until it returns something truthy; return it. Fails after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what or condition!r}")
        time.sleep(interval)


async def eventually(
    probe: Callable[[], Awaitable[T | None]],
    what: str,
    timeout: float = 20.0,
    interval: float = 0.02,
) -> T:
    """Await ``probe()`` until it returns something truthy; return it (fails after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(interval)


def side_lines(path: Path) -> list[str]:
    """Lines of a side-effect log (empty when it does not exist yet)."""
    if not path.exists():
        return []
    return [line for line in path.read_text().splitlines() if line.strip()]


def count_lines(path: Path, prefix: str) -> int:
    """How many lines of the side log start with ``prefix`` (e.g. ``"s3 start"``)."""
    return sum(1 for line in side_lines(path) if line.startswith(prefix + " "))


def pids_of(path: Path, prefix: str) -> list[int]:
    """PIDs of the side-log lines starting with ``prefix`` (``"<key> <what> <pid>"``)."""
    return [int(line.split()[-1]) for line in side_lines(path) if line.startswith(prefix + " ")]


def http_get(url: str) -> Any:
    """GET JSON from the orchestrator (sync; no client object to close)."""
    response = httpx.get(url, timeout=5)
    response.raise_for_status()
    return response.json()


def connected_pids(api_url: str) -> set[int]:
    """PIDs of the workers the orchestrator sees as connected."""
    try:
        items = http_get(api_url + "/api/v1/workers")["items"]
    except (httpx.HTTPError, KeyError, ValueError):
        return set()
    return {w["pid"] for w in items if w["status"] == "connected"}


# ---------------------------------------------------------------------- failure reports


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


def _failed(request: pytest.FixtureRequest) -> bool:
    return any(
        getattr(getattr(request.node, f"rep_{when}", None), "failed", False)
        for when in ("setup", "call")
    )


def _dump_logs(processes: Sequence[tuple[str, ServerProcess | WorkerProcess]]) -> None:
    for label, process in processes:
        text = process.output()
        print(f"\n===== {label} ({process.log_path}) =====\n{text[-6000:]}")


# ---------------------------------------------------------------------- processes


class Servers:
    """Creates orchestrators on fresh databases of one kind; all are killed at teardown.

    ``store_kind`` is ``"sqlite"`` (files in ``tmp_path``) or ``"postgres"`` (a fresh
    database per ``db`` name, from ``pg_server``; dropped at teardown, after the servers
    are stopped). Servers created with the same ``db`` share that database.
    """

    def __init__(
        self, tmp_path: Path, store_kind: str = "sqlite", pg_server: PostgresServer | None = None
    ) -> None:
        assert store_kind == "sqlite" or pg_server is not None, store_kind
        self.tmp_path = tmp_path
        self.store_kind = store_kind
        self.pg_server = pg_server
        self.started: list[ServerProcess] = []
        self.databases: dict[str, str] = {}

    def database_url(self, db: str = "polos.db") -> str:
        """The URL of the database called ``db`` (created on first use)."""
        if db not in self.databases:
            if self.pg_server is not None:
                self.databases[db] = self.pg_server.create(migrated=True)
            else:
                self.databases[db] = f"sqlite:///{self.tmp_path / db}"
        return self.databases[db]

    def __call__(
        self,
        *,
        lease_ms: int | None = None,
        heartbeat_ms: int | None = None,
        port: int | None = None,
        db: str = "polos.db",
        start: bool = True,
    ) -> ServerProcess:
        n = len(self.started) + 1
        server = ServerProcess(
            self.database_url(db),
            port=port,
            lease_ms=lease_ms,
            heartbeat_ms=heartbeat_ms,
            log_path=self.tmp_path / "logs" / f"server-{n}.log",
        )
        self.started.append(server)
        if start:
            server.start()
        return server

    def close(self) -> None:
        """Stop every server, then drop the PostgreSQL databases."""
        try:
            for server in self.started:
                server.stop(timeout=5)
        finally:
            if self.pg_server is not None:
                for url in self.databases.values():
                    self.pg_server.drop(url)


@pytest.fixture
def make_server(
    tmp_path: Path, request: pytest.FixtureRequest, store_kind: str
) -> Iterator[Servers]:
    """Factory: ``make_server(lease_ms=1500, heartbeat_ms=300)`` starts an orchestrator.

    Parametrized (through ``store_kind``): every test using it, or ``server``/``client``,
    runs once on SQLite and once on PostgreSQL.
    """
    pg_server = request.getfixturevalue("pg_server") if store_kind == "postgres" else None
    servers = Servers(tmp_path, store_kind, pg_server)
    try:
        yield servers
    finally:
        if _failed(request):
            _dump_logs([(f"server {i + 1}", s) for i, s in enumerate(servers.started)])
        servers.close()


@pytest.fixture
def server(make_server: Servers) -> ServerProcess:
    """A started orchestrator on a fresh database of each kind (default 5 s lease)."""
    return make_server()


@pytest.fixture
async def client(server: ServerProcess) -> AsyncIterator[PolosClient]:
    """A ``PolosClient`` on the ``server`` fixture, closed at teardown."""
    async with PolosClient(server.url) as polos_client:
        yield polos_client


@pytest.fixture
def side_log(tmp_path: Path) -> Path:
    """The side-effect log every worker started by ``start_worker`` appends to."""
    return tmp_path / "side.log"


class Workers:
    """Starts worker scripts against an orchestrator; every one is stopped at teardown."""

    def __init__(self, tmp_path: Path, side_log: Path, server: ServerProcess | None) -> None:
        self.tmp_path = tmp_path
        self.side_log = side_log
        self.server = server
        self.started: list[WorkerProcess] = []

    def __call__(
        self,
        script: Path | str = STEPS_WORKER,
        *,
        api_url: str | None = None,
        env: Mapping[str, str] | None = None,
        wait: bool = True,
        name: str | None = None,
    ) -> WorkerProcess:
        if api_url is None:
            assert self.server is not None, "no server: pass api_url"
            api_url = self.server.url
        n = len(self.started) + 1
        process = WorkerProcess(
            script,
            api_url=api_url,
            env={"SIDE_LOG": str(self.side_log), **(env or {})},
            log_path=self.tmp_path / "logs" / f"worker-{name or n}.log",
        )
        self.started.append(process)
        process.start()
        if wait:
            self.wait_connected(process, api_url)
        return process

    def wait_connected(self, process: WorkerProcess, api_url: str, timeout: float = 20.0) -> None:
        """Wait until the orchestrator lists this worker process as connected."""
        deadline = time.monotonic() + timeout
        while process.pid not in connected_pids(api_url):
            if not process.alive:
                pytest.fail(f"worker exited with {process.proc.returncode}:\n{process.output()}")  # type: ignore[union-attr]
            if time.monotonic() > deadline:
                pytest.fail(f"worker did not connect in {timeout} s:\n{process.output()}")
            time.sleep(0.05)


@pytest.fixture
def start_worker(
    request: pytest.FixtureRequest, tmp_path: Path, side_log: Path
) -> Iterator[Workers]:
    """Factory: ``start_worker(env={...})`` starts ``workers/steps_worker.py`` and waits for it.

    Uses the ``server`` fixture's URL when the test uses that fixture (pass ``api_url``
    otherwise). Workers are stopped (SIGCONT first, for stopped ones) at teardown.
    """
    server = request.getfixturevalue("server") if "server" in request.fixturenames else None
    workers = Workers(tmp_path, side_log, server)
    try:
        yield workers
    finally:
        if _failed(request):
            _dump_logs([(f"worker {i + 1}", w) for i, w in enumerate(workers.started)])
        for process in workers.started:
            if process.alive:
                process.signal(signal.SIGCONT)  # a stopped process cannot exit
            process.stop(timeout=5)


# ---------------------------------------------------------------------- CLI


def polos_executable() -> str:
    """The ``polos`` console script of this interpreter."""
    beside = Path(sys.executable).parent / "polos"
    if beside.exists():
        return str(beside)
    found = shutil.which("polos")
    assert found, "the polos console script is not installed"
    return found


ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def run_cli(
    *args: str, api_url: str | None, timeout: float = 60.0, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``polos ARGS`` with ``POLOS_API_URL`` set; output without colour codes."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("POLOS_")}
    env.update({"COLUMNS": "300", "NO_COLOR": "1", "TERM": "dumb"})
    if api_url is not None:
        env["POLOS_API_URL"] = api_url
    done = subprocess.run(
        [polos_executable(), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
    )
    done.stdout = ANSI.sub("", done.stdout)
    done.stderr = ANSI.sub("", done.stderr)
    return done
