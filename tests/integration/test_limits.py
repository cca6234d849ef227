"""Size limits (``POLOS_MAX_PAYLOAD_BYTES``, ``POLOS_MAX_EVENT_BYTES``,
``POLOS_MAX_STEP_OUTPUT_BYTES``): 413 on the API, a catchable error at the step on the
worker channel, and a failed (not lost, not hung) execution for an oversized result.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from polos.protocol._limits import MAX_DB_INT
from polos.testing._processes import ServerProcess

from .conftest import WORKERS_DIR, Servers, Workers

API = "/api/v1"
LIMITS_WORKER = WORKERS_DIR / "limits_worker.py"

SMALL = {
    "POLOS_MAX_PAYLOAD_BYTES": "1000",
    "POLOS_MAX_EVENT_BYTES": "2000",
    "POLOS_MAX_STEP_OUTPUT_BYTES": "3000",
}
HUGE = {name: str(100 * 1024 * 1024) for name in SMALL}
"""A worker with these limits does not check: the orchestrator's check has to catch it."""


@pytest.fixture
def limited(make_server: Servers, monkeypatch: pytest.MonkeyPatch) -> ServerProcess:
    """An orchestrator with small limits (on each store)."""
    for name, value in SMALL.items():
        monkeypatch.setenv(name, value)
    return make_server()


def _problem(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code, body
    return str(body["message"])


def test_api__values_over_their_limit_are_413_naming_the_limit(limited: ServerProcess) -> None:
    big = "x" * 1500  # JSON: 1,502 bytes
    with httpx.Client(base_url=limited.url + API, timeout=10) as http:
        message = _problem(
            http.post("/workflows/w/executions", json={"payload": big}), 413, "payload_too_large"
        )
        assert message == "payload is 1,502 bytes; the limit is 1,000 (POLOS_MAX_PAYLOAD_BYTES)"
        message = _problem(
            http.post("/workflows/w/executions", json={"initial_state": big}),
            413,
            "payload_too_large",
        )
        assert message.startswith("initial_state is 1,502 bytes")
        items = [{"workflow_id": "w"}, {"workflow_id": "w", "payload": big}]
        message = _problem(
            http.post("/executions/batch", json={"items": items}), 413, "payload_too_large"
        )
        assert message.startswith("items[1].payload is 1,502 bytes")
        schedule = {"workflow_id": "w", "cron": "* * * * *", "payload": big}
        message = _problem(http.post("/schedules", json=schedule), 413, "payload_too_large")
        assert "schedule payload is 1,502 bytes" in message
        message = _problem(
            http.post("/executions/nope/resume", json={"step_key": "k", "data": big}),
            413,
            "payload_too_large",
        )
        assert "resume data" in message and "POLOS_MAX_PAYLOAD_BYTES" in message

        event = "y" * 2500
        message = _problem(
            http.post("/events", json={"topic": "t", "data": event}), 413, "payload_too_large"
        )
        assert message == "event data is 2,502 bytes; the limit is 2,000 (POLOS_MAX_EVENT_BYTES)"
        events = {"events": [{"topic": "t"}, {"topic": "t", "data": event}]}
        message = _problem(http.post("/events/batch", json=events), 413, "payload_too_large")
        assert message.startswith("events[1].data is 2,502 bytes")
        # Nothing was published by the refused batch; under the limit it goes through.
        assert http.get("/events", params={"topic": "t"}).json()["items"] == []
        assert http.post("/events", json={"topic": "t", "data": "y" * 1900}).status_code == 201

        # 64-bit integers only: larger ones are refused, not a server error.
        response = http.get("/events", params={"topic": "t", "after": MAX_DB_INT + 1})
        _problem(response, 422, "invalid_request")
    assert "Traceback" not in limited.output()


def _run(http: httpx.Client, workflow_id: str, payload: Any) -> dict[str, Any]:
    response = http.post(f"/workflows/{workflow_id}/executions", json={"payload": payload})
    assert response.status_code == 201, response.text
    execution_id = response.json()["id"]
    for _ in range(30):
        execution = http.get(f"/executions/{execution_id}/result", params={"timeout": 1}).json()
        if execution["status"] in ("completed", "failed", "cancelled"):
            return dict(execution)
    pytest.fail(f"{workflow_id} did not finish: {execution}")


@pytest.mark.parametrize("checked_by", ["worker", "orchestrator"])
def test_channel__oversized_step_fails_the_step_and_oversized_result_fails_the_run(
    limited: ServerProcess, start_worker: Workers, checked_by: str
) -> None:
    # The worker reads the same variables and refuses before sending; with huge limits
    # of its own it sends everything, and the orchestrator refuses instead.
    env = HUGE if checked_by == "orchestrator" else SMALL
    start_worker(LIMITS_WORKER, api_url=limited.url, env=env)
    with httpx.Client(base_url=limited.url + API, timeout=10) as http:
        caught = _run(http, "big_step_caught", {"size": 5000})
        assert caught["status"] == "completed", caught
        assert caught["result"]["code"] == "payload_too_large"
        assert caught["result"]["small"] == "xxx"
        assert caught["result"]["caught"] == (
            "output of step 'big' is 5,002 bytes; the limit is 3,000 (POLOS_MAX_STEP_OUTPUT_BYTES)"
        )
        steps = http.get(f"/executions/{caught['id']}/steps").json()["items"]
        assert [s["key"] for s in steps] == ["small"]  # the oversized step was not recorded

        uncaught = _run(http, "big_step_uncaught", {"size": 5000})
        assert uncaught["status"] == "failed", uncaught
        assert uncaught["error"]["type"].endswith("PayloadTooLargeError")
        assert "POLOS_MAX_STEP_OUTPUT_BYTES" in uncaught["error"]["message"]
        assert len(uncaught["attempts"]) == 2  # the workflow's retry policy applied

        result = _run(http, "big_result", {"size": 5000})
        assert result["status"] == "failed", result
        assert result["error"]["type"] == "polos.PayloadTooLargeError"
        assert result["error"]["message"] == (
            f"result of execution {result['id']} is 5,002 bytes; "
            "the limit is 3,000 (POLOS_MAX_STEP_OUTPUT_BYTES)"
        )
        assert result["result"] is None
        # Under the limit, the same workflow completes.
        assert _run(http, "big_result", {"size": 100})["status"] == "completed"
    assert "Traceback" not in limited.output()
