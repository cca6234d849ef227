"""Real orchestrator and worker processes for tests and benchmarks.

They are started as subprocesses (``python -m polos.cli.server start`` and
``python your_worker.py``), so crash tests can ``kill -9`` them for real.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

import httpx


def free_port() -> int:
    """A TCP port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class _Process:
    def __init__(self, log_path: Path | None) -> None:
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: object | None = None

    def _spawn(self, argv: Sequence[str], env: Mapping[str, str]) -> None:
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            log = open(self.log_path, "ab")  # noqa: SIM115 - closed in _reap
            self._log = log
            out: int | object = log
        else:
            out = subprocess.DEVNULL
        self.proc = subprocess.Popen(
            list(argv),
            env={**os.environ, **env},
            stdout=out,  # type: ignore[arg-type]
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        """The process id (it must have been started)."""
        assert self.proc is not None, "not started"
        return self.proc.pid

    @property
    def alive(self) -> bool:
        """Whether the process runs."""
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """``kill -9`` the process, and wait for it to be gone."""
        if self.alive:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self._reap()

    def signal(self, sig: int) -> None:
        """Send a signal (e.g. SIGSTOP/SIGCONT)."""
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, wait up to ``timeout``, then SIGKILL. Returns the exit code."""
        if self.alive:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._reap()
        return self.proc.returncode if self.proc is not None else None

    def wait(self, timeout: float) -> int:
        """Wait for the process to exit on its own; its exit code."""
        assert self.proc is not None
        code = self.proc.wait(timeout)
        self._reap()
        return code

    def output(self) -> str:
        """Everything the process printed so far (when it logs to a file)."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")

    def _reap(self) -> None:
        log = self._log
        self._log = None
        if log is not None:
            log.close()  # type: ignore[attr-defined]


class ServerProcess(_Process):
    """``polos-server start`` in a subprocess, on a free port.

    Args:
        database_url: the database (``sqlite:///...`` or ``postgresql://...``).
        port: the port (a free one by default; kept across :meth:`restart`).
        lease_ms: worker lease; ``heartbeat_ms``: heartbeat interval.
        env: extra environment variables.
        log_path: file receiving the server's output.
        local: start in local mode (``--local``: loopback only, no API keys); ``False``
            requires API keys (create them with ``Store.create_api_key`` or
            ``polos-server keys create``).
    """

    def __init__(
        self,
        database_url: str,
        *,
        port: int | None = None,
        lease_ms: int | None = None,
        heartbeat_ms: int | None = None,
        env: Mapping[str, str] | None = None,
        log_path: Path | None = None,
        local: bool = True,
    ) -> None:
        super().__init__(log_path)
        self.local = local
        self.database_url = database_url
        self.port = port or free_port()
        self.lease_ms = lease_ms
        self.heartbeat_ms = heartbeat_ms
        self.env = dict(env or {})

    @property
    def url(self) -> str:
        """The orchestrator's base URL."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> ServerProcess:
        """Start it and wait until ``/health`` answers."""
        argv = [
            sys.executable,
            "-m",
            "polos.cli.server",
            "start",
            "--database-url",
            self.database_url,
            "--port",
            str(self.port),
            "--log-level",
            "info",
        ]
        if self.lease_ms is not None:
            argv += ["--lease-ms", str(self.lease_ms)]
        if self.heartbeat_ms is not None:
            argv += ["--heartbeat-ms", str(self.heartbeat_ms)]
        if self.local:
            argv.append("--local")
        self._spawn(argv, self.env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive:
                raise RuntimeError(f"orchestrator exited early:\n{self.output()[-3000:]}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(
            f"orchestrator did not become healthy in {timeout} s:\n{self.output()[-3000:]}"
        )

    def restart(self, timeout: float = 30.0) -> ServerProcess:
        """Start again on the same port and database (after :meth:`kill` or :meth:`stop`)."""
        return self.start(timeout)

    def __enter__(self) -> ServerProcess:
        return self.start() if not self.alive else self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()


class WorkerProcess(_Process):
    """A user's worker script (``python script.py``) in a subprocess.

    The script reads ``POLOS_API_URL`` (set here from ``api_url``) like any worker.
    """

    def __init__(
        self,
        script: Path | str,
        *,
        api_url: str,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        log_path: Path | None = None,
    ) -> None:
        super().__init__(log_path)
        self.script = Path(script)
        self.api_url = api_url
        self.args = list(args)
        self.env = dict(env or {})

    def start(self) -> WorkerProcess:
        """Start the script (it connects by itself; see :func:`wait_for_workers`)."""
        env = {"POLOS_API_URL": self.api_url, "PYTHONUNBUFFERED": "1", **self.env}
        self._spawn([sys.executable, str(self.script), *self.args], env)
        return self

    def __enter__(self) -> WorkerProcess:
        return self.start() if not self.alive else self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()


def wait_for_workers(
    api_url: str, count: int, timeout: float = 20.0, project_id: str | None = None
) -> None:
    """Wait until ``count`` workers are connected to the orchestrator at ``api_url``."""
    headers = {"X-Polos-Project": project_id} if project_id else {}
    deadline = time.monotonic() + timeout
    seen = 0
    while time.monotonic() < deadline:
        try:
            response = httpx.get(api_url + "/api/v1/workers", headers=headers, timeout=2)
            items = response.json()["items"]
            seen = sum(1 for w in items if w["status"] == "connected")
            if seen >= count:
                return
        except (httpx.HTTPError, KeyError, ValueError):
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{seen} of {count} workers connected after {timeout} s")
