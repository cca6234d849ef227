"""The ``polos`` CLI as a user runs it: a subprocess talking to a real orchestrator.

Errors must be one clear line on stderr, a non-zero exit code and never a traceback.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from polos.testing._processes import ServerProcess, free_port
from tests.integration.conftest import (
    SQLITE_ONLY,
    STEPS_WORKER,
    connected_pids,
    count_lines,
    polos_executable,
    run_cli,
    wait_until,
)

pytestmark = [pytest.mark.timeout(60), SQLITE_ONLY]


def finished(server: ServerProcess, execution_id: str) -> dict:
    """Wait (long poll) until the execution is finished; its JSON."""
    response = httpx.get(
        f"{server.url}/api/v1/executions/{execution_id}/result",
        params={"timeout": 30},
        timeout=40,
    )
    response.raise_for_status()
    body = response.json()
    assert body["status"] in ("completed", "failed", "cancelled"), body
    return body


def assert_clean_error(done: subprocess.CompletedProcess[str], *needles: str) -> None:
    """Non-zero exit, no traceback anywhere, and the needles in stderr."""
    assert done.returncode != 0, (done.stdout, done.stderr)
    assert "Traceback" not in done.stdout + done.stderr, done.stderr
    for needle in needles:
        assert needle in done.stderr, done.stderr


def assert_one_line_error(done: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert_clean_error(done, *needles)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error:"), done.stderr


def test_cli_run__wait_prints_the_result(server: ServerProcess, start_worker) -> None:
    start_worker()

    done = run_cli("run", "greet", "--input", '{"name": "cli"}', "--wait", api_url=server.url)

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"greeting": "hello cli"}


def test_cli_run__failed_execution_exits_non_zero_with_its_error(
    server: ServerProcess, start_worker
) -> None:
    start_worker()

    done = run_cli(
        "run", "process_order", "--input", '{"order_id": "x"}', "--wait", api_url=server.url
    )

    assert_one_line_error(done, "failed", "PayloadValidationError", "quantity")


def test_cli_run__no_wait_prints_id_and_show_lists_steps(
    server: ServerProcess, start_worker
) -> None:
    start_worker()

    started = run_cli(
        "run", "five_steps", "--input", '{"count": 3, "sleep": 0.01}', api_url=server.url
    )
    assert started.returncode == 0, started.stderr
    execution_id = started.stdout.strip()
    assert finished(server, execution_id)["status"] == "completed"

    shown = run_cli("executions", "show", execution_id, api_url=server.url)
    assert shown.returncode == 0, shown.stderr
    assert execution_id in shown.stdout
    assert "five_steps" in shown.stdout
    assert "completed" in shown.stdout
    for key in ("s1", "s2", "s3"):
        assert f" {key} " in shown.stdout
    as_json = run_cli("executions", "show", execution_id, "--json", api_url=server.url)
    assert as_json.returncode == 0, as_json.stderr
    data = json.loads(as_json.stdout)
    assert data["execution"]["id"] == execution_id
    assert data["execution"]["result"] == {"tag": "run", "values": [10, 20, 30], "total": 60}
    assert [s["key"] for s in data["steps"]] == ["s1", "s2", "s3"]


def start_execution(server: ServerProcess, workflow_id: str, payload: object) -> str:
    """Start an execution over HTTP (cheaper than a CLI process); its id."""
    response = httpx.post(
        f"{server.url}/api/v1/workflows/{workflow_id}/executions",
        json={"payload": payload},
        timeout=10,
    )
    response.raise_for_status()
    return str(response.json()["id"])


def test_cli_executions_list__filters_and_pages(server: ServerProcess, start_worker) -> None:
    start_worker()
    ids = []
    for name in ("x", "y"):
        ids.append(start_execution(server, "greet", {"name": name}))
        assert finished(server, ids[-1])["status"] == "completed"
    failing_id = start_execution(server, "always_fails", {})
    assert finished(server, failing_id)["status"] == "failed"

    table = run_cli("executions", "list", api_url=server.url)
    assert table.returncode == 0, table.stderr
    for execution_id in [*ids, failing_id]:
        assert execution_id in table.stdout
    assert "always_fails" in table.stdout and "greet" in table.stdout

    failed = run_cli("executions", "list", "--status", "failed", "--json", api_url=server.url)
    assert failed.returncode == 0, failed.stderr
    assert [e["id"] for e in json.loads(failed.stdout)["items"]] == [failing_id]

    page = run_cli(
        "executions", "list", "-w", "greet", "-s", "completed", "-n", "1", api_url=server.url
    )
    assert page.returncode == 0, page.stderr
    assert ids[1] in page.stdout and ids[0] not in page.stdout
    assert "more: polos executions list --cursor " in page.stdout
    cursor = page.stdout.split("--cursor ")[1].split()[0]
    rest = run_cli(
        "executions",
        "list",
        "-w",
        "greet",
        "-n",
        "1",
        "--cursor",
        cursor,
        "--json",
        api_url=server.url,
    )
    assert rest.returncode == 0, rest.stderr
    assert [e["id"] for e in json.loads(rest.stdout)["items"]] == [ids[0]]


def test_cli_cancel__cancels_a_running_execution(
    server: ServerProcess, start_worker, side_log: Path
) -> None:
    start_worker()
    started = run_cli(
        "run", "five_steps", "--input", '{"count": 20, "sleep": 0.5}', api_url=server.url
    )
    execution_id = started.stdout.strip()
    wait_until(lambda: count_lines(side_log, "s1 start") == 1, what="the execution to start")

    done = run_cli("cancel", execution_id, "--reason", "from the cli", api_url=server.url)

    assert done.returncode == 0, done.stderr
    assert execution_id in done.stdout and "cancelled" in done.stdout
    body = finished(server, execution_id)
    assert body["status"] == "cancelled"
    assert "from the cli" in body["error"]["message"]
    shown = run_cli("executions", "show", execution_id, api_url=server.url)
    assert "cancelled" in shown.stdout


def test_cli_errors__unknown_workflow(server: ServerProcess, start_worker) -> None:
    start_worker()

    done = run_cli("run", "no_such_workflow", "--input", "{}", "--wait", api_url=server.url)

    assert_one_line_error(done, "no_such_workflow")


def test_cli_errors__invalid_input_json(server: ServerProcess) -> None:
    done = run_cli("run", "greet", "--input", "{not json", api_url=server.url)

    assert_clean_error(done, "not valid JSON")


def test_cli_errors__unknown_execution(server: ServerProcess) -> None:
    done = run_cli("executions", "show", "no-such-execution", api_url=server.url)

    assert_one_line_error(done, "no-such-execution")


def test_cli_errors__cancel_unknown_execution(server: ServerProcess) -> None:
    done = run_cli("cancel", "no-such-execution", api_url=server.url)

    assert_one_line_error(done, "no-such-execution")


@pytest.mark.parametrize(
    "args",
    [
        ("executions", "list"),
        ("run", "greet", "--input", "{}", "--wait"),
    ],
)
def test_cli_errors__orchestrator_not_running(args: tuple[str, ...]) -> None:
    url = f"http://127.0.0.1:{free_port()}"

    done = run_cli(*args, api_url=url, timeout=30)

    assert_one_line_error(done, "cannot reach the orchestrator")


def test_cli_worker__import_error_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import os\n\nraise RuntimeError('kaboom at import time')\n")

    done = run_cli("worker", str(bad), api_url="http://127.0.0.1:9", timeout=30)

    assert_one_line_error(done, "RuntimeError", "kaboom at import time")


def test_cli_worker__runs_as_python_dash_m(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("raise ValueError('broken module')\n")

    done = subprocess.run(
        [sys.executable, "-m", "polos.cli.main", "worker", str(bad)],
        env={**os.environ, "POLOS_API_URL": "http://127.0.0.1:9", "COLUMNS": "300"},
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert "No such command" not in done.stderr
    assert_one_line_error(done, "ValueError", "broken module")


def test_cli_worker__malformed_api_url() -> None:
    done = run_cli("worker", str(STEPS_WORKER), api_url="localhost:8080", timeout=30)

    assert_one_line_error(done, "http://", "localhost:8080")


def test_cli_worker__missing_file(tmp_path: Path) -> None:
    done = run_cli("worker", str(tmp_path / "missing.py"), api_url="http://127.0.0.1:9")

    assert_one_line_error(done, "missing.py")


def test_cli_worker__serves_the_scripts_worker(
    server: ServerProcess, tmp_path: Path, side_log: Path
) -> None:
    log = (tmp_path / "cli-worker.log").open("wb")
    proc = subprocess.Popen(
        [polos_executable(), "worker", str(STEPS_WORKER)],
        env={**os.environ, "POLOS_API_URL": server.url, "SIDE_LOG": str(side_log)},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_until(lambda: proc.pid in connected_pids(server.url), what="polos worker to connect")

        done = run_cli(
            "run", "greet", "--input", '{"name": "cli worker"}', "--wait", api_url=server.url
        )

        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == {"greeting": "hello cli worker"}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        log.close()
