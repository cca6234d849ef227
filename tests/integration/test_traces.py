"""Traces end to end: a real orchestrator (SQLite and PostgreSQL) and real worker processes.

* ``GET /api/v1/executions/{id}/trace`` after a workflow with a child, a suspend/resume
  and a caught step failure; and after an agent run against the fake OpenAI server.
* OTLP: the orchestrator started with ``OTEL_EXPORTER_OTLP_ENDPOINT`` pointing at a
  collector run here (decoding the protobuf requests) sends the spans the API shows;
  a collector that is down delays and breaks nothing.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from polos import PolosClient, WaitKind
from polos.testing import FakeLLMServer, FakeReply, FakeRequest
from polos.testing._processes import ServerProcess, free_port
from tests.integration.conftest import SQLITE_ONLY, WORKERS_DIR, Servers, Workers
from tests.integration.workers.agent_worker import assistant

pytestmark = pytest.mark.timeout(90)

TRACE_WORKER = WORKERS_DIR / "trace_worker.py"
AGENT_WORKER = WORKERS_DIR / "agent_worker.py"

T = TypeVar("T")


# ---------------------------------------------------------------------- helpers


async def eventually(probe: Callable[[], Awaitable[T]], what: str, timeout: float = 30.0) -> T:
    """Await ``probe()`` until it returns something truthy (fails after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.05)


async def get_trace(api_url: str, execution_id: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=api_url) as http:
        response = await http.get(f"/api/v1/executions/{execution_id}/trace")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def parked(client: PolosClient, execution_id: str, step_key: str) -> bool:
    page = await client.list_waits(kind=WaitKind.SUSPEND, limit=500)
    return any(w.execution_id == execution_id and w.step_key == step_key for w in page.items)


def spans_by(trace: dict[str, Any], **match: Any) -> list[dict[str, Any]]:
    return [s for s in trace["spans"] if all(s[k] == v for k, v in match.items())]


def one(trace: dict[str, Any], **match: Any) -> dict[str, Any]:
    found = spans_by(trace, **match)
    assert len(found) == 1, (match, found)
    return found[0]


async def run_parent(client: PolosClient, api_url: str) -> tuple[str, dict[str, Any]]:
    """Run ``trace_parent`` to its suspend, check the open span, resume it, wait for it."""
    handle = await client.invoke("trace_parent", 20)
    await eventually(lambda: parked(client, handle.id, "approval"), "the suspend")
    waiting = await get_trace(api_url, handle.id)
    approval = one(waiting, name="approval")
    assert approval["end_ms"] is None and approval["status"] == "unset"
    assert approval["attributes"]["polos.wait.kind"] == "suspend"
    assert one(waiting, kind="execution", execution_id=handle.id)["end_ms"] is None
    await client.resume(handle.id, "approval", {"ok": True})
    result = await handle.result(timeout=30)
    assert result == {"doubled": 42, "approved": {"ok": True}}
    return handle.id, waiting


# ---------------------------------------------------------------------- the API


async def test_trace_api__root_child_suspend_and_failure_in_one_trace(
    server: ServerProcess, client: PolosClient, start_worker: Workers
) -> None:
    start_worker(TRACE_WORKER)
    root_id, waiting = await run_parent(client, server.url)
    root = one(waiting, kind="execution", execution_id=root_id)
    child = one(waiting, kind="execution", name="trace_child")

    # Asked through the child, the API answers with the whole root trace.
    trace = await get_trace(server.url, child["execution_id"])
    assert trace["root_id"] == root_id and not trace["truncated"]
    assert {s["trace_id"] for s in trace["spans"]} == {trace["trace_id"]}
    assert trace["trace_id"] == root["trace_id"]

    parent_span = one(trace, kind="execution", execution_id=root_id)
    assert parent_span["parent_span_id"] is None and parent_span["status"] == "ok"
    assert parent_span["end_ms"] >= parent_span["start_ms"]
    steps = {s["name"]: s for s in spans_by(trace, kind="step", execution_id=root_id)}
    assert list(steps) == ["prepare", "child", "approval", "charge"]
    assert {k: s["attributes"]["polos.step.kind"] for k, s in steps.items()} == {
        "prepare": "run",
        "child": "invoke_wait",
        "approval": "suspend",
        "charge": "run",
    }
    assert all(s["parent_span_id"] == parent_span["span_id"] for s in steps.values())
    # Same span id while open and once recorded: the resume closed the same span.
    assert steps["approval"]["span_id"] == one(waiting, name="approval")["span_id"]
    assert steps["approval"]["end_ms"] is not None
    assert steps["child"]["attributes"]["polos.wait.kind"] == "child"
    assert steps["charge"]["status"] == "error"
    assert "card declined" in steps["charge"]["status_message"]
    assert steps["charge"]["attributes"]["error.type"].endswith("ValueError")

    child_span = one(trace, kind="execution", name="trace_child")
    assert child_span["parent_span_id"] == steps["child"]["span_id"]
    double = one(trace, kind="step", execution_id=child_span["execution_id"])
    assert double["name"] == "double" and double["parent_span_id"] == child_span["span_id"]


async def test_trace_api__failed_execution_and_unknown_ids(
    server: ServerProcess, client: PolosClient, start_worker: Workers
) -> None:
    start_worker(TRACE_WORKER)
    handle = await client.invoke("trace_failing", 1)
    with pytest.raises(Exception, match="boom 1"):
        await handle.result(timeout=30)
    trace = await get_trace(server.url, handle.id)
    span = one(trace, kind="execution")
    assert span["status"] == "error" and span["status_message"] == "boom 1"
    assert span["attributes"]["error.type"].endswith("RuntimeError")

    async with httpx.AsyncClient(base_url=server.url) as http:
        missing = await http.get("/api/v1/executions/nope/trace")
        other = await http.get(
            f"/api/v1/executions/{handle.id}/trace", headers={"X-Polos-Project": "ghost"}
        )
    assert missing.status_code == 404
    assert missing.json()["code"] == "execution_not_found"
    assert other.status_code == 404 and other.json()["code"] == "project_not_found"


def _agent_script(request: FakeRequest) -> FakeReply:
    if request.tool_results < 1:
        return FakeReply(tool_calls=[("lookup", {"x": 3})], usage=(30, 5))
    return FakeReply("9", usage=(50, 4))


async def test_trace_api__agent_run_shows_llm_and_tool_decisions(
    server: ServerProcess, start_worker: Workers
) -> None:
    with FakeLLMServer() as fake_llm:
        fake_llm.respond_with(_agent_script)
        start_worker(AGENT_WORKER, env={"FAKE_LLM_URL": fake_llm.url, "OPENAI_API_KEY": "k"})
        async with PolosClient(server.url) as client:
            handle = await client.invoke(assistant.id, assistant.payload("square 3").model_dump())
            await handle.result(timeout=60)
    trace = await get_trace(server.url, handle.id)
    run = one(trace, kind="execution")
    assert run["attributes"]["gen_ai.agent.name"] == "assistant"
    assert run["attributes"]["gen_ai.usage.input_tokens"] == 80
    first = one(trace, name="llm:1")["attributes"]
    assert first["polos.step.kind"] == "llm"
    assert (first["gen_ai.usage.input_tokens"], first["gen_ai.usage.output_tokens"]) == (30, 5)
    assert first["polos.llm.tool_calls"] == ["lookup"]
    assert first["gen_ai.response.model"]
    second = one(trace, name="llm:2")["attributes"]
    assert second["gen_ai.usage.output_tokens"] == 4 and "polos.llm.tool_calls" not in second
    (tool,) = [s for s in trace["spans"] if s["name"].startswith("tool:1:")]
    assert tool["attributes"]["polos.step.kind"] == "tool"
    assert tool["attributes"]["gen_ai.tool.name"] == "lookup"
    assert tool["attributes"]["gen_ai.tool.call.id"] == first["polos.llm.tool_call_ids"][0]
    names = [s["name"] for s in spans_by(trace, kind="step")]
    assert names.index("llm:1") < names.index(tool["name"]) < names.index("llm:2")


# ---------------------------------------------------------------------- OTLP


class Collector:
    """An OTLP/HTTP trace receiver: decodes every ``POST /v1/traces`` it is sent."""

    def __init__(self) -> None:
        self.requests: list[ExportTraceServiceRequest] = []
        self.lock = threading.Lock()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # http.server calls it by this name
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                message = ExportTraceServiceRequest()
                message.ParseFromString(body)
                with collector.lock:
                    collector.requests.append(message)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def spans(self) -> dict[str, dict[str, Any]]:
        """Every span received, by span id (hex): ids, name, status, service name."""
        found: dict[str, dict[str, Any]] = {}
        with self.lock:
            requests = list(self.requests)
        for request in requests:
            for resource_spans in request.resource_spans:
                service = {
                    kv.key: kv.value.string_value for kv in resource_spans.resource.attributes
                }.get("service.name")
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        found[span.span_id.hex()] = {
                            "trace_id": span.trace_id.hex(),
                            "parent_span_id": span.parent_span_id.hex() or None,
                            "name": span.name,
                            "status": span.status.code,
                            "service": service,
                            "start_ms": span.start_time_unix_nano // 1_000_000,
                        }
        return found


@pytest.fixture
def collector() -> Iterator[Collector]:
    c = Collector()
    c.thread.start()
    try:
        yield c
    finally:
        c.httpd.shutdown()
        c.httpd.server_close()


def _server_with(make_server: Servers, env: dict[str, str], db: str = "polos.db") -> ServerProcess:
    """An orchestrator with extra environment (the ``make_server`` factory takes none)."""
    server = ServerProcess(
        make_server.database_url(db),
        env=env,
        log_path=make_server.tmp_path / "logs" / f"server-otel-{len(make_server.started)}.log",
    )
    make_server.started.append(server)  # stopped (and its database dropped) at teardown
    return server.start()


@SQLITE_ONLY
async def test_otlp_export__collector_receives_the_spans_the_api_shows(
    make_server: Servers, start_worker: Workers, collector: Collector
) -> None:
    server = _server_with(
        make_server,
        {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url, "OTEL_BSP_SCHEDULE_DELAY": "50"},
    )
    start_worker(TRACE_WORKER, api_url=server.url)
    async with PolosClient(server.url) as client:
        root_id, _ = await run_parent(client, server.url)
        failing = await client.invoke("trace_failing", 2)
        with pytest.raises(Exception, match="boom 2"):
            await failing.result(timeout=30)
    expected = [
        s
        for t in (await get_trace(server.url, root_id), await get_trace(server.url, failing.id))
        for s in t["spans"]
    ]
    assert len(expected) == 2 + 4 + 1 + 1 + 1  # 3 executions, their 6 steps

    async def all_arrived() -> bool:
        return set(collector.spans()) >= {s["span_id"] for s in expected}

    await eventually(all_arrived, "the spans at the collector")
    received = collector.spans()
    assert len(received) == len(expected)  # each finished execution is exported once
    for span in expected:
        got = received[span["span_id"]]
        assert got["trace_id"] == span["trace_id"] and got["name"] == span["name"]
        assert got["parent_span_id"] == span["parent_span_id"]
        assert got["start_ms"] == span["start_ms"]
        assert got["service"] == "polos-orchestrator"
        assert got["status"] == {"ok": 1, "error": 2}[span["status"]]


@SQLITE_ONLY
async def test_otlp_export__execution_failed_by_its_dead_worker_is_exported_and_awaited(
    make_server: Servers, start_worker: Workers, collector: Collector
) -> None:
    # An execution that ends because its worker died (recovery budget spent) is ended by
    # the gateway, not by a batched write: it must reach the same hook (export, waiters).
    server = _server_with(
        make_server,
        {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url, "OTEL_BSP_SCHEDULE_DELAY": "50"},
    )
    start_worker(TRACE_WORKER, api_url=server.url)
    async with PolosClient(server.url) as client:
        doomed = await client.invoke("trace_dies", 1)
        with pytest.raises(Exception, match="max_recovery_attempts=1"):
            await doomed.result(timeout=30)
    [root] = [
        s for s in (await get_trace(server.url, doomed.id))["spans"] if s["kind"] == "execution"
    ]

    async def exported() -> bool:
        return root["span_id"] in collector.spans()

    await eventually(exported, "the dead worker's execution at the collector")
    assert collector.spans()[root["span_id"]]["status"] == 2  # error


@SQLITE_ONLY
async def test_otlp_export__a_collector_that_is_down_breaks_nothing(
    make_server: Servers, start_worker: Workers
) -> None:
    server = _server_with(
        make_server,
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{free_port()}",
            "OTEL_EXPORTER_OTLP_TIMEOUT": "1",
            "OTEL_BSP_SCHEDULE_DELAY": "50",
        },
    )
    start_worker(TRACE_WORKER, api_url=server.url)
    async with PolosClient(server.url) as client:
        handles = [await client.invoke("trace_child", n) for n in range(5)]
        assert [await h.result(timeout=30) for h in handles] == [0, 2, 4, 6, 8]
        await asyncio.sleep(0.5)  # exports have been tried (and failed) by now
        assert (await client.invoke("trace_child", 7)).id
    assert httpx.get(server.url + "/health", timeout=5).status_code == 200
    started = time.monotonic()
    server.stop(timeout=20)
    # A clean, bounded shutdown (uvicorn re-raises SIGTERM, so the exit code is -15).
    assert time.monotonic() - started < 15 and "orchestrator stopping" in server.output()
    assert "spans failed" in server.output() and "Traceback" not in server.output()
