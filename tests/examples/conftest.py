"""Run the examples in ``examples/`` end to end, offline, as a newcomer would.

Each example gets its own orchestrator (``polos-server start --local`` on a SQLite file in
``tmp_path``), its own ``python worker.py`` and then ``python main.py`` from its folder,
with ``POLOS_FAKE_LLM=1`` so the agents answer from the bundled fake model server even if a
real key is in the environment. ``POLOS_EXAMPLE_TMP`` names a scratch folder the example
may write to (ledgers, crash markers).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from polos.testing import ServerProcess, WorkerProcess, wait_for_workers

EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples"


@dataclass
class ExampleRun:
    """What one example printed."""

    output: str
    """``main.py``'s stdout and stderr."""
    worker_output: str
    """The worker's output (empty for examples that start their own workers)."""
    scratch: Path
    """The example's ``POLOS_EXAMPLE_TMP`` folder."""


RunExample = Callable[..., ExampleRun]


def _tail(path: Path, limit: int = 4000) -> str:
    return path.read_text(errors="replace")[-limit:] if path.exists() else "(no output)"


@pytest.fixture
def run_example(tmp_path: Path) -> Iterator[RunExample]:
    """``run_example("01-agent-with-tools")``: server + worker + main.py; fails on rc != 0.

    Keyword arguments: ``start_worker=False`` for examples whose ``main.py`` runs its own
    workers, ``args`` for main.py, ``env`` for extra variables, ``timeout`` in seconds.
    """
    started: list[ServerProcess | WorkerProcess] = []

    def run(
        name: str,
        *,
        start_worker: bool = True,
        args: tuple[str, ...] = (),
        env: Mapping[str, str] | None = None,
        timeout: float = 90.0,
    ) -> ExampleRun:
        folder = EXAMPLES_DIR / name
        assert (folder / "main.py").is_file(), f"{folder} has no main.py"
        assert (folder / "README.md").is_file(), f"{folder} has no README.md"
        scratch = tmp_path / "scratch"
        scratch.mkdir(exist_ok=True)
        extra = {"POLOS_FAKE_LLM": "1", "POLOS_EXAMPLE_TMP": str(scratch), **(env or {})}
        server = ServerProcess(
            f"sqlite:///{tmp_path / 'polos.db'}", log_path=tmp_path / "server.log", env=extra
        )
        started.append(server)
        server.start()
        worker_log = tmp_path / "worker.log"
        if start_worker:
            assert (folder / "worker.py").is_file(), f"{folder} has no worker.py"
            worker = WorkerProcess(
                folder / "worker.py", api_url=server.url, env=extra, log_path=worker_log
            )
            started.append(worker)
            worker.start()
            wait_for_workers(server.url, 1, timeout=30)
        env_all = {
            **os.environ,
            "POLOS_API_URL": server.url,
            "PYTHONUNBUFFERED": "1",
            "COLUMNS": "120",
            **extra,
        }
        try:
            done = subprocess.run(
                [sys.executable, "main.py", *args],
                cwd=folder,
                env=env_all,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired as exc:
            pytest.fail(
                f"{name}/main.py did not finish in {timeout} s\n--- main.py\n{exc.stdout}\n"
                f"{exc.stderr}\n--- worker\n{_tail(worker_log)}\n"
                f"--- server\n{_tail(tmp_path / 'server.log')}"
            )
        output = done.stdout + done.stderr
        if done.returncode != 0:
            pytest.fail(
                f"{name}/main.py exited with {done.returncode}\n--- main.py\n{output[-6000:]}\n"
                f"--- worker\n{_tail(worker_log)}\n--- server\n{_tail(tmp_path / 'server.log')}"
            )
        worker_output = worker_log.read_text(errors="replace") if worker_log.exists() else ""
        return ExampleRun(output=output, worker_output=worker_output, scratch=scratch)

    yield run
    for process in reversed(started):
        process.stop()
