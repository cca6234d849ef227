"""``polos events``, ``polos waits`` and ``polos resume`` as a user runs them.

Errors must be one clear line on stderr, a non-zero exit code and never a traceback.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from polos.testing._processes import ServerProcess, free_port
from tests.integration.conftest import SQLITE_ONLY, polos_executable, run_cli

pytestmark = [pytest.mark.timeout(60), SQLITE_ONLY]


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


def publish(server: ServerProcess, topic: str, data: object) -> dict:
    """Publish over HTTP (cheaper than a CLI process); the event's JSON."""
    response = httpx.post(
        f"{server.url}/api/v1/events", json={"topic": topic, "data": data}, timeout=10
    )
    response.raise_for_status()
    return response.json()


def tail_process(server: ServerProcess, *args: str) -> subprocess.Popen[str]:
    """``polos events tail ARGS`` in the background, stdout piped."""
    return subprocess.Popen(
        [polos_executable(), "events", "tail", *args],
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("POLOS_")},
            "POLOS_API_URL": server.url,
            "NO_COLOR": "1",
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


# ---------------------------------------------------------------------- events


def test_cli_events_publish__prints_topic_and_seq(server: ServerProcess) -> None:
    first = run_cli("events", "publish", "orders/new", "--data", '{"id": 1}', api_url=server.url)
    second = run_cli(
        "events",
        "publish",
        "orders/new",
        "-d",
        '{"id": 2}',
        "--idempotency-key",
        "k-2",
        "--json",
        api_url=server.url,
    )
    again = run_cli(
        "events", "publish", "orders/new", "--idempotency-key", "k-2", api_url=server.url
    )
    bare = run_cli("events", "publish", "other", api_url=server.url)

    for done in (first, second, again, bare):
        assert done.returncode == 0, done.stderr
    assert "published orders/new seq 1" in first.stdout
    event = json.loads(second.stdout)
    assert (event["topic"], event["seq"], event["data"], event["created"]) == (
        "orders/new",
        2,
        {"id": 2},
        True,
    )
    assert "already published: orders/new seq 2" in again.stdout
    assert "published other seq 1" in bare.stdout
    assert "triggered" not in first.stdout


def test_cli_events_publish__data_file(server: ServerProcess, tmp_path: Path) -> None:
    path = tmp_path / "event.json"
    path.write_text('{"from": "file"}')

    done = run_cli("events", "publish", "files", "--data-file", str(path), api_url=server.url)

    assert done.returncode == 0, done.stderr
    listed = run_cli("events", "list", "files", "--json", api_url=server.url)
    assert [e["data"] for e in json.loads(listed.stdout)["items"]] == [{"from": "file"}]


def test_cli_events_list__table_json_and_pages(server: ServerProcess) -> None:
    for i in range(3):
        publish(server, "listed", {"n": i})

    table = run_cli("events", "list", "listed", api_url=server.url)
    as_json = run_cli("events", "list", "listed", "--after", "1", "--json", api_url=server.url)
    page = run_cli("events", "list", "listed", "-n", "2", api_url=server.url)
    empty = run_cli("events", "list", "nothing-here", "--json", api_url=server.url)

    for done in (table, as_json, page, empty):
        assert done.returncode == 0, done.stderr
    assert "SEQ" in table.stdout and '{"n": 2}' in table.stdout
    assert [line.split()[0] for line in table.stdout.splitlines()[1:]] == ["1", "2", "3"]
    assert [e["seq"] for e in json.loads(as_json.stdout)["items"]] == [2, 3]
    assert '{"n": 2}' not in page.stdout
    assert "more: polos events list listed --after 2" in page.stdout
    assert json.loads(empty.stdout)["items"] == []


def test_cli_events_tail__count_prints_logged_then_live_events(server: ServerProcess) -> None:
    publish(server, "tailed", {"n": 1})
    publish(server, "tailed", "two")

    logged = run_cli("events", "tail", "tailed", "--after", "0", "--count", "2", api_url=server.url)
    proc = tail_process(server, "tailed", "--after", "2", "--count", "1", "--json")
    try:
        publish(server, "tailed", [3])
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)

    assert logged.returncode == 0, logged.stderr
    lines = logged.stdout.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("1  ") and lines[0].endswith('{"n": 1}')
    assert lines[1].startswith("2  ") and lines[1].endswith('"two"')
    assert proc.returncode == 0, err
    event = json.loads(out)
    assert (event["seq"], event["data"], event["topic"]) == (3, [3], "tailed")


def test_cli_events_tail__ctrl_c_exits_cleanly(server: ServerProcess) -> None:
    publish(server, "forever", 1)
    proc = tail_process(server, "forever", "--after", "0")
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)

    assert first.startswith("1  ")
    assert proc.returncode == 0, err
    assert "Traceback" not in out + err, err


def test_cli_events__bad_topic_and_bad_json(server: ServerProcess) -> None:
    bad_topic = run_cli("events", "publish", "has space", api_url=server.url)
    bad_json = run_cli("events", "publish", "t", "--data", "{not json", api_url=server.url)
    bad_tail = run_cli("events", "tail", "", api_url=server.url)

    assert_one_line_error(bad_topic, "topic", "422")
    assert_clean_error(bad_json, "not valid JSON")
    assert_one_line_error(bad_tail, "topic", "422")


# ---------------------------------------------------------------------- waits and resume


def test_cli_waits__empty_project(server: ServerProcess) -> None:
    table = run_cli("waits", api_url=server.url)
    as_json = run_cli("waits", "--kind", "suspend", "--workflow", "x", "--json", api_url=server.url)
    bad_kind = run_cli("waits", "--kind", "nap", api_url=server.url)

    assert table.returncode == 0, table.stderr
    assert "no execution is waiting" in table.stdout
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout)["items"] == []
    assert_clean_error(bad_kind, "nap")


def test_cli_resume__unknown_execution(server: ServerProcess) -> None:
    done = run_cli("resume", "no-such-execution", "approval", api_url=server.url)

    assert_one_line_error(done, "no-such-execution", "404")


def test_cli_resume__not_waiting_prints_the_servers_reason(
    server: ServerProcess, start_worker
) -> None:
    start_worker()
    started = run_cli("run", "greet", "--input", '{"name": "r"}', "--wait", api_url=server.url)
    assert started.returncode == 0, started.stderr
    execution_id = json.loads(run_cli("executions", "list", "--json", api_url=server.url).stdout)[
        "items"
    ][0]["id"]

    done = run_cli("resume", execution_id, "approval", "--data", '{"ok": true}', api_url=server.url)

    assert_one_line_error(done, "409", "not_waiting")
    reason = done.stderr.removeprefix("error:").split("(HTTP 409")[0].strip()
    assert reason, done.stderr


def test_cli_resume__invalid_data(server: ServerProcess, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")

    inline = run_cli("resume", "some-id", "approval", "--data", "[1,", api_url=server.url)
    from_file = run_cli(
        "resume", "some-id", "approval", "--data-file", str(bad), api_url=server.url
    )
    both = run_cli("resume", "x", "s", "--data", "1", "--data-file", str(bad), api_url=server.url)
    missing = run_cli(
        "resume", "x", "s", "--data-file", str(tmp_path / "missing.json"), api_url=server.url
    )

    assert_clean_error(inline, "--data is not valid JSON")
    assert_clean_error(from_file, "not valid JSON", "bad.json")
    assert_clean_error(both, "--data or --data-file")
    assert_clean_error(missing, "missing.json")


@pytest.mark.parametrize(
    "args",
    [
        ("events", "publish", "t", "--data", "1"),
        ("events", "list", "t"),
        ("events", "tail", "t"),
        ("waits",),
        ("resume", "x", "approval"),
    ],
)
def test_cli_events__orchestrator_not_running(args: tuple[str, ...]) -> None:
    url = f"http://127.0.0.1:{free_port()}"

    done = run_cli(*args, api_url=url, timeout=30)

    assert_one_line_error(done, "cannot reach the orchestrator")
