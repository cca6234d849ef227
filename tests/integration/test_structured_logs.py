"""Structured logs of real processes: a JSON worker and a JSON orchestrator.

User code's log lines inside a workflow and its steps carry the execution's ids; the
orchestrator's line about requeueing a killed worker's execution carries its id.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from polos import PolosClient
from polos.testing._processes import ServerProcess
from tests.integration.conftest import WORKERS_DIR, wait_until

pytestmark = pytest.mark.timeout(60)

LOGS_WORKER = WORKERS_DIR / "logs_worker.py"
JSON = {"POLOS_LOG_FORMAT": "json"}


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every line of a process's output that is a JSON object (all of them, in JSON mode)."""
    out = []
    for line in text.splitlines():
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


@pytest.fixture
def json_server(tmp_path: Path) -> Any:
    """An orchestrator on SQLite logging JSON lines (stopped at teardown)."""
    server = ServerProcess(
        f"sqlite:///{tmp_path / 'logs.db'}", env=JSON, log_path=tmp_path / "logs" / "server.log"
    )
    server.start()
    try:
        yield server
    finally:
        server.stop(timeout=5)


async def test_json_logs__user_code_lines_carry_execution_and_step_ids(
    json_server: ServerProcess, start_worker
) -> None:
    worker = start_worker(LOGS_WORKER, api_url=json_server.url, env=JSON)
    async with PolosClient(json_server.url) as client:
        handle = await client.invoke("logs_something", {})
        assert await handle.result(timeout=30) == 3
        sync = await client.invoke("logs_sync", {})
        assert await sync.result(timeout=30) == 3

        def user_lines() -> list[dict[str, Any]]:
            return [d for d in json_lines(worker.output()) if d["logger"] == "user.code"]

        lines = wait_until(lambda: len(user_lines()) >= 5 and user_lines(), what="user lines")
    by_message = {d["message"]: d for d in lines}
    body = by_message["workflow body runs"]
    assert body["execution_id"] == handle.id
    assert body["workflow_id"] == "logs_something"
    assert body["attempt"] == 1
    assert body["worker_id"] and "step_key" not in body
    assert by_message["sync step says 1"]["step_key"] == "sync_part"
    assert by_message["sync step says 1"]["execution_id"] == handle.id
    assert by_message["async step says 2"]["step_key"] == "async_part"
    assert by_message["sync workflow body runs"]["execution_id"] == sync.id
    assert by_message["sync step says 3"]["execution_id"] == sync.id
    assert by_message["sync step says 3"]["step_key"] == "in_thread"
    for line in lines:
        assert {"ts", "level", "logger", "message"} <= line.keys()
    # the worker's own lines are JSON too (nothing else on its output)
    assert all(line.startswith("{") for line in worker.output().splitlines() if line)


async def test_json_logs__orchestrator_requeue_line_carries_the_execution_id(
    json_server: ServerProcess, start_worker
) -> None:
    worker = start_worker(LOGS_WORKER, api_url=json_server.url, env=JSON)
    async with PolosClient(json_server.url) as client:
        handle = await client.invoke("sleeps", {})
        wait_until(
            lambda: any(d["message"] == "about to sleep" for d in json_lines(worker.output())),
            what="the workflow to start",
        )
        worker.kill()

        def requeued() -> list[dict[str, Any]]:
            return [
                d
                for d in json_lines(json_server.output())
                if d.get("execution_id") == handle.id and "requeued" in d["message"]
            ]

        (line,) = wait_until(requeued, what="the orchestrator's requeue line")
        assert line["logger"] == "polos.orchestrator"
        assert line["worker_id"] and str(worker.pid) in line["worker_id"]
        await client.cancel(handle.id)
