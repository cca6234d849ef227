"""``polos dev worker.py``: an embedded orchestrator and a worker reloaded on changes.

Real processes: ``polos dev`` as a user runs it, a worker file in a temporary project
folder, edits to that file, and Ctrl-C (SIGINT) or SIGTERM at the end.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from polos import PolosClient
from polos.testing import free_port, wait_for_workers
from tests.integration.conftest import ANSI, polos_executable, run_cli, wait_until

pytestmark = [pytest.mark.timeout(150), pytest.mark.slow]

WORKER = """\
from polos import WorkflowContext, workflow


@workflow
async def greet(ctx: WorkflowContext, payload: dict) -> str:
    return {value!r}
"""


def write_worker(path: Path, value: str) -> None:
    path.write_text(WORKER.format(value=value))


def invoke(api_url: str, workflow_id: str = "greet") -> Any:
    """Start the workflow through the client and wait for its result."""

    async def go() -> Any:
        async with PolosClient(api_url) as client:
            handle = await client.invoke(workflow_id, {})
            return await client.result(handle.id, timeout=60)

    return asyncio.run(go())


def child_pids(pid: int) -> set[int]:
    """The orchestrator and worker processes among the children of a process (Linux /proc);
    not short-lived helpers a library may run (``file``, ``ldconfig``)."""
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
        for child in children:
            try:
                argv = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"polos.cli.server" in argv or b"polos.cli.main" in argv:
                found.add(child)
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purpose (only its parent's wait is left).
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


class Dev:
    """``polos dev ARGS`` started in ``folder``, its output in a file."""

    def __init__(self, folder: Path, *args: str) -> None:
        self.folder = folder
        self.log_path = folder.parent / f"{folder.name}-dev.log"
        self.seen: set[int] = set()  # every child pid observed, to check none is left
        env = {k: v for k, v in os.environ.items() if not k.startswith("POLOS_")}
        env.update({"NO_COLOR": "1", "TERM": "dumb"})
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [polos_executable(), "dev", *args],
                cwd=folder,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def output(self) -> str:
        return ANSI.sub("", self.log_path.read_text(errors="replace"))

    def wait_for(self, text: str, count: int = 1, timeout: float = 60) -> None:
        def enough() -> bool:
            self.children()
            if self.proc.poll() is not None:
                pytest.fail(f"polos dev exited ({self.proc.returncode}):\n{self.output()}")
            return self.output().count(text) >= count

        try:
            wait_until(enough, timeout=timeout, interval=0.1, what=f"{text!r} x{count}")
        except BaseException:
            print(self.output())
            raise

    def children(self) -> set[int]:
        now = child_pids(self.proc.pid) if self.proc.poll() is None else set()
        self.seen |= now
        return now

    def close(self) -> None:
        """Teardown: nothing may outlive the test, whatever happened."""
        if self.proc.poll() is None:
            self.children()
            self.proc.kill()
            self.proc.wait(10)
        for pid in self.seen:
            if alive(pid):
                os.killpg(pid, signal.SIGKILL)


@pytest.fixture
def dev(tmp_path: Path) -> Iterator[Any]:
    started: list[Dev] = []

    def start(folder: Path, *args: str) -> Dev:
        started.append(Dev(folder, *args))
        return started[-1]

    yield start
    for one in started:
        one.close()


def test_dev__runs_reloads_on_edit_survives_a_broken_file_and_stops_on_ctrl_c(
    tmp_path: Path, dev: Any
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    worker_file = project / "worker.py"
    write_worker(worker_file, "v1")
    port = free_port()
    url = f"http://127.0.0.1:{port}"

    running = dev(project, "worker.py", "--port", str(port))
    running.wait_for("worker ready")
    banner = running.output()
    assert f"API      : {url}/api/v1" in banner
    assert f"UI       : {url}/" in banner
    assert "database : .polos/dev.db" in banner
    assert "reload   : on a change to a *.py file under ." in banner
    assert (project / ".polos" / "dev.db").exists()  # the default database, in this folder
    wait_for_workers(url, 1)
    assert invoke(url) == "v1"
    first = running.children()
    assert len(first) == 2, first  # the orchestrator and the worker

    # Edit the worker: it is restarted and the next execution runs the new code.
    write_worker(worker_file, "v2")
    running.wait_for("reloading: worker.py")
    running.wait_for("worker ready", count=2)
    assert invoke(url) == "v2"
    second = running.children()
    assert len(first & second) == 1  # the same orchestrator, a new worker
    assert not any(alive(pid) for pid in first - second)  # the old worker is gone

    # A broken file: one error line, and `polos dev` waits for the next change.
    worker_file.write_text(worker_file.read_text() + "\nbroken = (\n")
    running.wait_for("waiting for a file change to restart it")
    output = running.output()
    [error] = [line for line in output.splitlines() if "importing worker.py failed" in line]
    assert "SyntaxError" in error
    assert "Traceback" not in output
    assert running.proc.poll() is None

    # Fixed: running again, with the new code.
    write_worker(worker_file, "v3")
    running.wait_for("worker ready", count=3)
    assert invoke(url) == "v3"
    running.children()

    # Ctrl-C: both processes stop, exit code 0, no traceback.
    running.proc.send_signal(signal.SIGINT)
    assert running.proc.wait(40) == 0, running.output()
    wait_until(lambda: not any(alive(pid) for pid in running.seen), timeout=10, what="children")
    output = running.output()
    assert "Traceback" not in output
    assert "stopping" in output


def test_dev__no_reload_custom_database_and_sigterm(tmp_path: Path, dev: Any) -> None:
    project = tmp_path / "project"
    project.mkdir()
    write_worker(project / "worker.py", "hello")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    db = tmp_path / "custom.db"

    running = dev(
        project,
        "worker.py",
        "--port",
        str(port),
        "--no-reload",
        "--database-url",
        f"sqlite:///{db}",
    )
    running.wait_for("worker ready")
    assert "reload   : off" in running.output()
    assert invoke(url) == "hello"
    assert db.exists()
    assert not (project / ".polos").exists()
    running.children()

    running.proc.send_signal(signal.SIGTERM)
    assert running.proc.wait(40) == 0, running.output()
    wait_until(lambda: not any(alive(pid) for pid in running.seen), timeout=10, what="children")
    assert "Traceback" not in running.output()


def test_dev__missing_file_is_a_usage_error(tmp_path: Path) -> None:
    done = run_cli("dev", "missing.py", "--port", str(free_port()), api_url=None, cwd=tmp_path)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "no such file: missing.py" in done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert not (tmp_path / ".polos").exists()  # nothing was started or created


def test_dev__port_in_use_is_one_clear_error(tmp_path: Path) -> None:
    write_worker(tmp_path / "worker.py", "v1")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run_cli("dev", "worker.py", "--port", str(port), api_url=None, cwd=tmp_path)
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert f"port {port} on 127.0.0.1 is in use" in done.stderr
    assert "Traceback" not in done.stdout + done.stderr
