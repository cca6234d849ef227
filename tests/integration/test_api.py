"""The public HTTP API of a real orchestrator process, including every kind of bad input.

One orchestrator serves the whole module, once on SQLite and once on PostgreSQL
(``module_store_kind``). Workflows are registered by writing a worker's
registration into the same database (the orchestrator only dispatches to
workers connected to it, so executions created here stay queued).
Every error answer must have the API's one shape, ``{"code", "message"}``, and
no bad input may cause a 500 (checked at the end against the server log).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from polos.protocol import DEFAULT_PROJECT_ID, WorkflowSpec
from polos.storage import open_store
from polos.testing._processes import ServerProcess

API = "/api/v1"
WORKFLOWS = ("wf-main", "wf-list-a", "wf-list-b", "wf-cancel", "wf-page")
OTHER_PROJECT = "other-project"


# ---------------------------------------------------------------------------- fixtures


def _register(url: str) -> None:
    async def go() -> None:
        store = await open_store(url)
        try:
            await store.ensure_project(OTHER_PROJECT, "Other project")
            for project_id, workflows in (
                (DEFAULT_PROJECT_ID, WORKFLOWS),
                (OTHER_PROJECT, ("wf-other",)),
            ):
                await store.register_worker(
                    project_id=project_id,
                    worker_id=f"fake-worker-{project_id}",
                    name="fake",
                    hostname="test-host",
                    pid=1,
                    orchestrator_id="not-a-real-orchestrator",
                    max_concurrent=10,
                    workflows=[WorkflowSpec(id=w, fingerprint="fp") for w in workflows],
                    active={},
                    lease_ms=600_000,
                )
        finally:
            await store.close()

    asyncio.run(go())


@pytest.fixture(scope="module")
def module_databases(
    module_store_kind: str,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> Iterator[Callable[[str], str]]:
    """Factory: each call gives a fresh database of the module's store kind (its URL).

    PostgreSQL databases are dropped at the end of the module, after the servers using
    them have stopped (those fixtures depend on this one, so they are torn down first).
    """
    tmp = tmp_path_factory.mktemp("api-db")
    pg_server = request.getfixturevalue("pg_server") if module_store_kind == "postgres" else None
    with contextlib.ExitStack() as stack:

        def new(name: str) -> str:
            if pg_server is not None:
                return stack.enter_context(pg_server.database(migrated=True))
            return f"sqlite:///{tmp / name}.db"

        yield new


@pytest.fixture(scope="module")
def server(
    module_databases: Callable[[str], str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """An orchestrator on a fresh database (each store in turn), with WORKFLOWS registered."""
    tmp = tmp_path_factory.mktemp("api")
    url = module_databases("main")
    process = ServerProcess(url, log_path=tmp / "srv.log")
    process.start()
    try:
        _register(url)  # the server created the default project; add workflows beside it
        yield process
    finally:
        process.stop(timeout=10)


@pytest.fixture(scope="module")
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        yield client


def problem(response: httpx.Response, status: int, code: str | None = None) -> str:
    """Assert an error answer of the API's shape; its message."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"code", "message"}, body
    assert isinstance(body["message"], str) and body["message"]
    if code is not None:
        assert body["code"] == code, body
    return str(body["message"])


def invoke(http: httpx.Client, workflow_id: str = "wf-main", **body: Any) -> dict[str, Any]:
    response = http.post(f"{API}/workflows/{workflow_id}/executions", json=body)
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


# ---------------------------------------------------------------------------- happy paths


def test_health__reports_ok_and_the_database(http: httpx.Client, module_store_kind: str) -> None:
    response = http.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["database"] == module_store_kind
    assert body["version"]
    assert body["orchestrator_id"]


def test_workflows__lists_registered_workflows(http: httpx.Client) -> None:
    response = http.get(f"{API}/workflows")
    assert response.status_code == 200
    assert [w["id"] for w in response.json()["items"]] == sorted(WORKFLOWS)


def test_invoke__creates_then_same_idempotency_key_returns_same_execution(
    http: httpx.Client,
) -> None:
    body = {"payload": {"order": 42}, "idempotency_key": "order-42", "priority": 3}
    first = http.post(f"{API}/workflows/wf-main/executions", json=body)
    assert first.status_code == 201, first.text
    created = first.json()
    assert created["created"] is True
    assert created["status"] == "queued"
    assert created["payload"] == {"order": 42}
    assert created["priority"] == 3
    assert created["workflow_id"] == "wf-main"

    again = http.post(
        f"{API}/workflows/wf-main/executions",
        json={**body, "payload": {"order": "different"}},
    )
    assert again.status_code == 200, again.text
    assert again.json()["id"] == created["id"]
    assert again.json()["created"] is False
    assert again.json()["payload"] == {"order": 42}

    fetched = http.get(f"{API}/executions/{created['id']}")
    assert fetched.status_code == 200
    assert fetched.json()["id"] == created["id"]
    assert fetched.json()["idempotency_key"] == "order-42"


def test_invoke__without_body_fields_uses_defaults(http: httpx.Client) -> None:
    response = http.post(f"{API}/workflows/wf-main/executions", json={})
    assert response.status_code == 201, response.text
    created = response.json()
    assert (created["payload"], created["priority"], created["idempotency_key"]) == (None, 0, None)
    # No idempotency key: every call starts a new execution.
    assert invoke(http, "wf-main")["id"] != created["id"]


def test_steps__of_a_new_execution_is_empty(http: httpx.Client) -> None:
    created = invoke(http)
    response = http.get(f"{API}/executions/{created['id']}/steps")
    assert response.status_code == 200
    assert response.json() == {"items": []}


def test_result__with_zero_timeout_returns_current_state(http: httpx.Client) -> None:
    created = invoke(http)
    response = http.get(f"{API}/executions/{created['id']}/result", params={"timeout": 0})
    assert response.status_code == 200
    assert response.json()["status"] == "queued"


def test_cancel__queued_execution_becomes_cancelled(http: httpx.Client) -> None:
    created = invoke(http, "wf-cancel")
    response = http.post(f"{API}/executions/{created['id']}/cancel")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "cancelled"
    assert body["cancelled_by"] == "api"
    assert body["completed_at"] is not None

    fetched = http.get(f"{API}/executions/{created['id']}").json()
    assert (fetched["status"], fetched["cancelled_by"]) == ("cancelled", "api")
    # A finished execution does not change when cancelled again.
    again = http.post(f"{API}/executions/{created['id']}/cancel", json={"reason": "twice"})
    assert again.status_code == 200
    assert again.json()["cancelled_by"] == "api"
    # A finished execution answers a long poll at once.
    result = http.get(f"{API}/executions/{created['id']}/result", params={"timeout": 30})
    assert result.status_code == 200
    assert result.json()["status"] == "cancelled"


def test_cancel__with_reason_records_it(http: httpx.Client) -> None:
    created = invoke(http, "wf-cancel")
    response = http.post(f"{API}/executions/{created['id']}/cancel", json={"reason": "no longer"})
    assert response.status_code == 200, response.text
    assert response.json()["cancelled_by"] == "api: no longer"


def test_list_executions__filters_by_status_and_workflow(http: httpx.Client) -> None:
    a1 = invoke(http, "wf-list-a")["id"]
    a2 = invoke(http, "wf-list-a")["id"]
    b1 = invoke(http, "wf-list-b")["id"]
    assert http.post(f"{API}/executions/{a2}/cancel").status_code == 200

    def ids(**params: Any) -> list[str]:
        response = http.get(f"{API}/executions", params={"limit": 500, **params})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["next_cursor"] is None
        return [e["id"] for e in body["items"]]

    assert set(ids(workflow_id="wf-list-a")) == {a1, a2}
    assert ids(workflow_id="wf-list-b") == [b1]
    assert ids(workflow_id="wf-list-a", status="queued") == [a1]
    assert ids(workflow_id="wf-list-a", status="cancelled") == [a2]
    assert set(ids(workflow_id="wf-list-a", status=["queued", "cancelled"])) == {a1, a2}
    assert ids(workflow_id="wf-list-b", status="completed") == []
    assert ids(workflow_id="no-such-workflow") == []
    everything = ids()
    assert {a1, a2, b1} <= set(everything)


def test_list_executions__cursor_walks_every_page_once(http: httpx.Client) -> None:
    created = {invoke(http, "wf-page", payload=i)["id"] for i in range(7)}
    seen: list[str] = []
    cursor: str | None = None
    for _ in range(10):
        params: dict[str, Any] = {"workflow_id": "wf-page", "limit": 3}
        if cursor:
            params["cursor"] = cursor
        response = http.get(f"{API}/executions", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        seen.extend(e["id"] for e in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert cursor is None
    assert len(seen) == len(set(seen)) == 7
    assert set(seen) == created


def test_projects__header_selects_the_project(http: httpx.Client) -> None:
    headers = {"X-Polos-Project": OTHER_PROJECT}
    response = http.post(
        f"{API}/workflows/wf-other/executions", json={"payload": 1}, headers=headers
    )
    assert response.status_code == 201, response.text
    eid = response.json()["id"]
    assert response.json()["project_id"] == OTHER_PROJECT
    assert http.get(f"{API}/executions/{eid}", headers=headers).status_code == 200
    # Invisible from the default project, and its workflows are not the default's.
    problem(http.get(f"{API}/executions/{eid}"), 404, "execution_not_found")
    problem(http.post(f"{API}/executions/{eid}/cancel"), 404, "execution_not_found")
    problem(http.post(f"{API}/workflows/wf-other/executions", json={}), 404, "workflow_not_found")


def test_openapi__is_valid_json_listing_the_routes(http: httpx.Client) -> None:
    response = http.get(f"{API}/openapi.json")
    assert response.status_code == 200
    spec = json.loads(response.text)
    assert spec["openapi"].startswith("3.")
    paths = spec["paths"]
    for path, method in [
        (f"{API}/workflows/{{workflow_id}}/executions", "post"),
        (f"{API}/executions", "get"),
        (f"{API}/executions/{{execution_id}}", "get"),
        (f"{API}/executions/{{execution_id}}/result", "get"),
        (f"{API}/executions/{{execution_id}}/steps", "get"),
        (f"{API}/executions/{{execution_id}}/cancel", "post"),
        (f"{API}/workflows", "get"),
        (f"{API}/workers", "get"),
    ]:
        assert method in paths.get(path, {}), f"{method.upper()} {path} missing from OpenAPI"
    assert "ErrorBody" in spec["components"]["schemas"]


# ---------------------------------------------------------------------------- bad input


def test_invoke__unknown_workflow_is_404_naming_it(http: httpx.Client) -> None:
    response = http.post(f"{API}/workflows/no-such-workflow/executions", json={})
    message = problem(response, 404, "workflow_not_found")
    assert "no-such-workflow" in message


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/executions/{id}"),
        ("GET", "/executions/{id}/steps"),
        ("GET", "/executions/{id}/result?timeout=0"),
        ("POST", "/executions/{id}/cancel"),
    ],
)
def test_execution__unknown_id_is_404(http: httpx.Client, method: str, path: str) -> None:
    response = http.request(method, API + path.format(id="does-not-exist"))
    message = problem(response, 404, "execution_not_found")
    assert "does-not-exist" in message


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b"",
        b"[1, 2",
        b'{"payload": }',
        b"\xff\xfe\x00garbage",
        b"\x80abc",
        b'{"payload": "\xc3\x28"}',
    ],
    ids=["broken", "empty", "unclosed", "bad-value", "bom-garbage", "not-utf8", "bad-utf8-string"],
)
def test_invoke__malformed_json_is_4xx_with_error_shape(http: httpx.Client, content: bytes) -> None:
    response = http.post(
        f"{API}/workflows/wf-main/executions",
        content=content,
        headers={"Content-Type": "application/json"},
    )
    assert 400 <= response.status_code < 500, response.text
    problem(response, response.status_code)


def test_invoke__json_that_is_not_an_object_is_422(http: httpx.Client) -> None:
    response = http.post(f"{API}/workflows/wf-main/executions", json=[1, 2, 3])
    problem(response, 422, "invalid_request")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"priority": "x"}, "priority"),
        ({"priority": 5000}, "priority"),
        ({"idempotency_key": 12}, "idempotency_key"),
        ({"idempotency_key": ""}, "idempotency_key"),
        ({"queue": ["a"]}, "queue"),
    ],
)
def test_invoke__wrong_field_type_is_422_naming_the_field(
    http: httpx.Client, body: dict[str, Any], field: str
) -> None:
    response = http.post(f"{API}/workflows/wf-main/executions", json=body)
    message = problem(response, 422, "invalid_request")
    assert field in message


def test_invoke__unknown_field_is_422(http: httpx.Client) -> None:
    response = http.post(
        f"{API}/workflows/wf-main/executions", json={"payload": 1, "surprise": True}
    )
    message = problem(response, 422, "invalid_request")
    assert "surprise" in message


def test_cancel__unknown_field_in_body_is_422(http: httpx.Client) -> None:
    created = invoke(http, "wf-cancel")
    response = http.post(f"{API}/executions/{created['id']}/cancel", json={"why": "x"})
    problem(response, 422, "invalid_request")
    assert http.get(f"{API}/executions/{created['id']}").json()["status"] == "queued"


def test_invoke__body_over_the_limit_is_413(http: httpx.Client) -> None:
    big = {"payload": "x" * (10 * 1024 * 1024 + 10)}
    response = http.post(f"{API}/workflows/wf-main/executions", json=big)
    message = problem(response, 413, "payload_too_large")
    assert str(10 * 1024 * 1024) in message


@pytest.fixture(scope="module")
def small_server(
    module_databases: Callable[[str], str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """An orchestrator with a 1000-byte body limit."""
    tmp = tmp_path_factory.mktemp("api-small")
    process = ServerProcess(
        module_databases("small"),
        env={"POLOS_MAX_BODY_BYTES": "1000"},
        log_path=tmp / "srv.log",
    )
    process.start()
    try:
        yield process
    finally:
        process.stop(timeout=10)


def test_invoke__declared_body_over_configured_limit_is_413(
    small_server: ServerProcess,
) -> None:
    with httpx.Client(base_url=small_server.url, timeout=10) as client:
        response = client.post(f"{API}/workflows/anything/executions", json={"payload": "x" * 2000})
        message = problem(response, 413, "payload_too_large")
        assert "1000" in message
        # Under the limit, the body is read (and the unknown workflow reported).
        response = client.post(f"{API}/workflows/anything/executions", json={"payload": "x"})
        problem(response, 404, "workflow_not_found")
    assert "Traceback" not in small_server.output()


def test_invoke__streamed_body_over_configured_limit_is_413(
    small_server: ServerProcess,
) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"payload": "'
        for _ in range(10):
            yield b"x" * 500
        yield b'"}'

    with httpx.Client(base_url=small_server.url, timeout=10) as client:
        # A generator body is sent chunked, without a Content-Length to check up front.
        response = client.post(
            f"{API}/workflows/anything/executions",
            content=chunks(),
            headers={"Content-Type": "application/json"},
        )
    assert "content-length" not in {k.lower() for k in response.request.headers}
    problem(response, 413, "payload_too_large")


@pytest.mark.parametrize(
    "cursor",
    [
        "!!!not-base64!!!",
        base64.urlsafe_b64encode(b"no-colon").decode(),
        base64.urlsafe_b64encode(b"notanumber:abc").decode(),
        base64.urlsafe_b64encode(b"\xff\xfe:x").decode(),
    ],
    ids=["garbage", "no-colon", "not-a-number", "not-utf8"],
)
def test_list_executions__invalid_cursor_is_400(http: httpx.Client, cursor: str) -> None:
    response = http.get(f"{API}/executions", params={"cursor": cursor})
    problem(response, 400, "invalid_cursor")


def test_list_executions__invalid_status_is_422(http: httpx.Client) -> None:
    response = http.get(f"{API}/executions", params={"status": "exploded"})
    message = problem(response, 422, "invalid_request")
    assert "status" in message


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"created_after": "5", "created_before": "5"}, "created_after must be before"),
        ({"created_after": "yesterday"}, "created_after"),
        ({"created_before": "-1"}, "created_before"),
        ({"top_level": "maybe"}, "top_level"),
    ],
)
def test_list_executions__bad_filters_are_422_naming_them(
    http: httpx.Client, params: dict[str, str], fragment: str
) -> None:
    response = http.get(f"{API}/executions", params=params)
    assert response.status_code == 422, response.text
    assert fragment in response.json()["message"]


def test_retry__queued_execution_is_409_and_unknown_is_404(http: httpx.Client) -> None:
    created = invoke(http)
    problem(http.post(f"{API}/executions/{created['id']}/retry"), 409, "not_retryable")
    problem(http.post(f"{API}/executions/nope/retry"), 404, "execution_not_found")
    problem(http.post(f"{API}/executions/nope/retry", json={"who": "x"}), 422, "invalid_request")


@pytest.mark.parametrize("limit", ["0", "-1", "501", "1000", "ten"])
def test_list_executions__limit_out_of_range_is_422(http: httpx.Client, limit: str) -> None:
    response = http.get(f"{API}/executions", params={"limit": limit})
    message = problem(response, 422, "invalid_request")
    assert "limit" in message


def test_result__timeout_out_of_range_is_422(http: httpx.Client) -> None:
    created = invoke(http)
    response = http.get(f"{API}/executions/{created['id']}/result", params={"timeout": 61})
    problem(response, 422, "invalid_request")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/executions"),
        ("GET", "/workflows"),
        ("GET", "/workers"),
        ("GET", "/executions/whatever"),
        ("POST", "/workflows/wf-main/executions"),
    ],
)
def test_projects__unknown_project_header_is_404(
    http: httpx.Client, method: str, path: str
) -> None:
    response = http.request(
        method,
        API + path,
        headers={"X-Polos-Project": "nope"},
        json={} if method == "POST" else None,
    )
    message = problem(response, 404, "project_not_found")
    assert "nope" in message


def test_routes__unknown_route_and_wrong_method_have_error_shape(http: httpx.Client) -> None:
    problem(http.get(f"{API}/no/such/route"), 404, "not_found")
    problem(http.delete(f"{API}/executions"), 405, "method_not_allowed")


# ---------------------------------------------------------------------------- last: the log


def test_batch_invoke__creates_all_in_order_and_honours_idempotency(http: httpx.Client) -> None:
    items = [{"workflow_id": "wf-main", "payload": {"n": i}} for i in range(5)]
    items.append({"workflow_id": "wf-main", "payload": 1, "idempotency_key": "batch-key"})
    first = http.post("/api/v1/executions/batch", json={"items": items})
    assert first.status_code == 201, first.text
    created = first.json()["items"]
    assert [e["payload"] for e in created[:5]] == [{"n": i} for i in range(5)]
    assert all(e["status"] == "queued" and e["created"] for e in created)
    again = http.post(
        "/api/v1/executions/batch",
        json={"items": [{"workflow_id": "wf-main", "idempotency_key": "batch-key"}]},
    )
    assert again.json()["items"][0]["id"] == created[5]["id"]
    assert again.json()["items"][0]["created"] is False


def test_batch_invoke__unknown_workflow_is_404_and_creates_nothing(http: httpx.Client) -> None:
    before = len(http.get("/api/v1/executions", params={"limit": 500}).json()["items"])
    response = http.post(
        "/api/v1/executions/batch",
        json={"items": [{"workflow_id": "wf-main"}, {"workflow_id": "ghost-wf"}]},
    )
    assert "ghost-wf" in problem(response, 404, "workflow_not_found")
    after = len(http.get("/api/v1/executions", params={"limit": 500}).json()["items"])
    assert after == before


@pytest.mark.parametrize(
    "body",
    [{"items": []}, {"items": [{"workflow_id": "wf-main"}] * 1001}, {"items": [{}]}, {"other": 1}],
)
def test_batch_invoke__invalid_body_is_422(http: httpx.Client, body: dict[str, Any]) -> None:
    problem(http.post("/api/v1/executions/batch", json=body), 422, "invalid_request")


def test_wait_many__returns_current_state_after_timeout_in_request_order(
    http: httpx.Client,
) -> None:
    a, b = invoke(http)["id"], invoke(http)["id"]
    response = http.post("/api/v1/executions/wait", json={"ids": [b, a], "timeout": 0.2})
    assert response.status_code == 200, response.text
    assert [e["id"] for e in response.json()["items"]] == [b, a]
    assert all(e["status"] == "queued" for e in response.json()["items"])


def test_wait_many__unknown_id_is_404_and_bad_bodies_are_422(http: httpx.Client) -> None:
    known = invoke(http)["id"]
    response = http.post("/api/v1/executions/wait", json={"ids": [known, "missing-id"]})
    assert "missing-id" in problem(response, 404, "execution_not_found")
    for body in ({"ids": []}, {"ids": [known], "timeout": 61}, {"ids": "x"}):
        problem(http.post("/api/v1/executions/wait", json=body), 422, "invalid_request")


def test_server_log__has_no_traceback_after_bad_input(
    server: ServerProcess, small_server: ServerProcess
) -> None:
    # Runs after the tests above (file order): none of them may have caused a 500.
    for process in (server, small_server):
        log_text = process.output()
        assert "orchestrator" in log_text  # the log is the server's
        assert "Traceback" not in log_text, log_text[-4000:]
        assert "unhandled error" not in log_text
