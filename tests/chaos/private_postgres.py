"""A throw-away PostgreSQL cluster of our own, so that the chaos test can restart it.

Restarting the shared server would break every other test using it at the same time
(the suite runs tests in parallel). ``initdb`` refuses to run as root: as root, the
cluster is created and run as the ``postgres`` system user (``runuser``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg


def _bin_dir() -> Path | None:
    """The directory holding ``initdb`` and ``pg_ctl`` (Debian keeps them off PATH)."""
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return versions[-1].parent if versions else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrivatePostgres:
    """One cluster in a temporary directory, on its own port; :meth:`restart` is safe here."""

    def __init__(self) -> None:
        bin_dir = _bin_dir()
        if bin_dir is None:
            raise RuntimeError("initdb not found: install the PostgreSQL server package")
        self._bin = bin_dir
        self._as_postgres = os.geteuid() == 0
        self.dir = Path(tempfile.mkdtemp(prefix="polos-chaos-pg-"))
        self.port = _free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, timeout: float = 120) -> None:
        command = [str(self._bin / args[0]), *args[1:]]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=timeout)

    def start(self) -> PrivatePostgres:
        """``initdb`` (trust auth, no fsync: it is thrown away) and start the server."""
        if self._as_postgres:
            shutil.chown(self.dir, "postgres", "postgres")
        data = str(self.dir / "data")
        self._run("initdb", "-D", data, "-U", "postgres", "-A", "trust", "--no-sync")
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", data, "-o", options, "-l", str(self.dir / "log"), "-w", "start")
        self.wait()
        return self

    def restart(self) -> None:
        """Fast restart (the way an operator restarts it): every connection is cut."""
        # ``-l``: without a log file the server inherits our pipe and ``run`` never returns.
        data, log = str(self.dir / "data"), str(self.dir / "log")
        self._run("pg_ctl", "-D", data, "-l", log, "-m", "fast", "-w", "restart")
        self.wait()

    def wait(self, timeout: float = 60) -> None:
        """Until the server accepts connections."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(self.url, connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def create_database(self, name: str) -> str:
        """A new database on this cluster; its URL."""
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url.rsplit("/", 1)[0] + f"/{name}"

    def stop(self) -> None:
        """Stop the server and delete the cluster."""
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            self._run("pg_ctl", "-D", str(self.dir / "data"), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)


@contextlib.contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    """A started private cluster for the ``with`` block."""
    cluster = PrivatePostgres()
    try:
        yield cluster.start()
    finally:
        cluster.stop()
