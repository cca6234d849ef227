"""Spans derived from executions and step records (pure functions, no I/O)."""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.trace import StatusCode

from polos.orchestrator._trace_attrs import base_key, tool_call_of
from polos.orchestrator._trace_export import (
    TraceExporter,
    export_configured,
    make_resource,
    readable_span,
)
from polos.orchestrator._traces import (
    derive_trace,
    execution_span_id,
    step_span,
    step_span_id,
    trace_id,
)
from polos.protocol import (
    ErrorInfo,
    Execution,
    ExecutionStatus,
    StepKind,
    StepRecord,
    TraceSpan,
    WaitInfo,
    WaitKind,
)
from polos.storage import Transition


def _execution(eid: str, **fields: Any) -> Execution:
    values: dict[str, Any] = {
        "id": eid,
        "project_id": "default",
        "workflow_id": "wf",
        "status": ExecutionStatus.COMPLETED,
        "attempt": 1,
        "root_id": eid,
        "created_at": 1_000,
        "started_at": 1_010,
        "completed_at": 2_000,
        "updated_at": 2_000,
        "available_at": 1_000,
    }
    values.update(fields)
    return Execution(**values)


def _step(key: str, kind: StepKind, seq: int, output: Any = None, **fields: Any) -> StepRecord:
    return StepRecord(
        key=key,
        seq=seq,
        kind=kind,
        output=output,
        started_at=fields.pop("started_at", 1_100 + seq),
        completed_at=fields.pop("completed_at", 1_150 + seq),
        **fields,
    )


def _by_name(spans: list[TraceSpan]) -> dict[str, TraceSpan]:
    return {s.name: s for s in spans}


# ---------------------------------------------------------------------- ids


def test_ids__are_sha256_prefixes_of_the_documented_seeds() -> None:
    assert trace_id("r1") == hashlib.sha256(b"trace:r1").hexdigest()[:32]
    assert execution_span_id("e1") == hashlib.sha256(b"exec:e1").hexdigest()[:16]
    assert step_span_id("e1", "charge") == hashlib.sha256(b"step:e1:charge").hexdigest()[:16]
    assert len(trace_id("x")) == 32 and int(trace_id("x"), 16) != 0


def test_step_keys__occurrence_suffixes_and_tool_call_keys_parse() -> None:
    assert base_key("llm:1#2") == "llm:1" and base_key("a#b") == "a#b"
    assert tool_call_of("tool:3:call_a:b") == ("tool", "3", "call_a:b")
    assert tool_call_of("approve:1:c1#2") == ("approve", "1", "c1")
    assert tool_call_of("tool:x:c1") is None and tool_call_of("charge") is None


# ---------------------------------------------------------------------- trees


def test_trace__child_span_hangs_under_the_parent_step_that_started_it() -> None:
    root = _execution("root")
    child = _execution("kid", workflow_id="child_wf", root_id="root", parent_id="root")
    child = child.model_copy(update={"parent_step_key": "ship"})
    steps = {
        "root": [
            _step("prepare", StepKind.RUN, 1, 2),
            _step("ship", StepKind.INVOKE_WAIT, 2, {"result": 4}),
        ],
        "kid": [_step("double", StepKind.RUN, 1, 4)],
    }
    view = derive_trace([root, child], steps)

    assert view.root_id == "root" and view.trace_id == trace_id("root")
    assert {s.trace_id for s in view.spans} == {trace_id("root")}
    spans = _by_name(view.spans)
    assert spans["wf"].parent_span_id is None and spans["wf"].kind == "execution"
    assert spans["wf"].span_id == execution_span_id("root")
    assert spans["child_wf"].parent_span_id == spans["ship"].span_id == step_span_id("root", "ship")
    assert spans["double"].parent_span_id == execution_span_id("kid")
    assert spans["ship"].attributes["polos.step.kind"] == "invoke_wait"
    assert spans["ship"].attributes["polos.wait.kind"] == "child"
    assert (spans["wf"].start_ms, spans["wf"].end_ms, spans["wf"].status) == (1_010, 2_000, "ok")
    assert (spans["prepare"].start_ms, spans["prepare"].end_ms) == (1_101, 1_151)
    # parents come before their children
    order = [s.span_id for s in view.spans]
    assert order.index(spans["ship"].span_id) < order.index(spans["child_wf"].span_id)


def test_trace__open_wait_is_an_open_span_and_its_children_hang_under_it() -> None:
    root = _execution("root", status=ExecutionStatus.WAITING, completed_at=None)
    child = _execution(
        "kid",
        workflow_id="kid_wf",
        status=ExecutionStatus.RUNNING,
        completed_at=None,
        started_at=None,
        root_id="root",
        parent_id="root",
        parent_step_key="fan",
    )
    wait = WaitInfo(
        execution_id="root",
        workflow_id="wf",
        root_id="root",
        step_key="fan",
        kind=WaitKind.CHILD,
        pending_children=1,
        created_at=1_500,
    )
    view = derive_trace([root, child], {"root": [], "kid": []}, [wait])
    spans = _by_name(view.spans)
    assert spans["wf"].end_ms is None and spans["wf"].status == "unset"
    assert spans["fan"].end_ms is None and spans["fan"].start_ms == 1_500
    assert spans["fan"].attributes["polos.wait.pending_children"] == 1
    kid = spans["kid_wf"]  # an execution span is named after its workflow
    assert kid.parent_span_id == spans["fan"].span_id
    assert kid.start_ms == 1_000  # not started yet: from its creation


def test_trace__errors_become_error_statuses_with_the_error_type() -> None:
    failed = _execution(
        "f",
        status=ExecutionStatus.FAILED,
        error=ErrorInfo(type="builtins.RuntimeError", message="boom"),
    )
    boom = ErrorInfo(type="builtins.ValueError", message="declined")
    view = derive_trace([failed], {"f": [_step("charge", StepKind.RUN, 1, error=boom)]})
    spans = _by_name(view.spans)
    assert spans["wf"].status == "error" and spans["wf"].status_message == "boom"
    assert spans["wf"].attributes["error.type"] == "builtins.RuntimeError"
    assert spans["charge"].status == "error" and spans["charge"].status_message == "declined"
    assert spans["charge"].attributes["error.type"] == "builtins.ValueError"

    cancelled = _execution("c", status=ExecutionStatus.CANCELLED, cancelled_by="api: stop")
    span = derive_trace([cancelled], {}).spans[0]
    assert span.status == "error" and span.status_message == "cancelled by api: stop"


# ---------------------------------------------------------------------- agents


def _answer(calls: list[tuple[str, str]], tokens: tuple[int, int]) -> dict[str, Any]:
    return {
        "text": "" if calls else "done",
        "tool_calls": [{"id": i, "name": n, "arguments": {}} for i, n in calls],
        "usage": {"input_tokens": tokens[0], "output_tokens": tokens[1], "reasoning_tokens": 0},
        "model": "fake-model",
        "finish_reason": "tool_calls" if calls else "stop",
        "response_id": "resp-1",
    }


def test_agent_steps__llm_and_tool_spans_carry_genai_attributes() -> None:
    agent = _execution(
        "a",
        workflow_id="assistant",
        result={"agent_id": "assistant", "usage": {"input_tokens": 80, "output_tokens": 9}},
    )
    steps = [
        _step("llm:1", StepKind.LLM, 1, _answer([("c1", "lookup"), ("c2", "search")], (30, 5))),
        _step("tool:1:c1", StepKind.TOOL, 2, '{"square": 1}'),
        _step("tool:1:c2", StepKind.TOOL, 3, "Error: x", attempts=2),
        _step("guardrail:2:0", StepKind.RUN, 4, {"passed": False, "reason": "rude"}),
        _step("llm:2", StepKind.LLM, 5, _answer([], (50, 4))),
        _step("approve:2:c9", StepKind.SUSPEND, 6, {"data": {"approved": True}}),
        _step("hook:on_end:2:0", StepKind.RUN, 7, {"stop": True}),
    ]
    spans = _by_name(derive_trace([agent], {"a": steps}).spans)

    llm = spans["llm:1"].attributes
    assert llm["polos.step.kind"] == "llm" and llm["gen_ai.operation.name"] == "chat"
    assert llm["gen_ai.usage.input_tokens"] == 30 and llm["gen_ai.usage.output_tokens"] == 5
    assert llm["gen_ai.response.model"] == "fake-model"
    assert llm["gen_ai.response.finish_reasons"] == ["tool_calls"]
    assert llm["polos.llm.tool_calls"] == ["lookup", "search"]
    assert "polos.llm.usage.reasoning_tokens" not in llm  # zero extras are left out
    assert "gen_ai.request.model" not in llm  # the request is not recorded
    tool = spans["tool:1:c1"].attributes
    assert tool["polos.step.kind"] == "tool" and tool["gen_ai.operation.name"] == "execute_tool"
    assert tool["gen_ai.tool.name"] == "lookup" and tool["gen_ai.tool.call.id"] == "c1"
    assert spans["tool:1:c2"].attributes["gen_ai.tool.name"] == "search"
    assert spans["tool:1:c2"].attributes["polos.step.attempts"] == 2
    guard = spans["guardrail:2:0"].attributes
    assert guard["polos.guardrail.passed"] is False and guard["polos.guardrail.reason"] == "rude"
    approval = spans["approve:2:c9"].attributes
    assert approval["polos.wait.kind"] == "suspend" and approval["gen_ai.tool.call.id"] == "c9"
    assert "gen_ai.tool.name" not in approval  # c9 was never asked for by llm:2
    assert spans["hook:on_end:2:0"].attributes["polos.hook.event"] == "on_end"
    run = spans["assistant"].attributes
    assert run["gen_ai.agent.name"] == "assistant" and run["gen_ai.usage.input_tokens"] == 80


def test_agent_steps__odd_outputs_give_fewer_attributes_not_errors() -> None:
    steps = [
        _step("llm:1", StepKind.LLM, 1, "not a dict"),
        _step("llm:2", StepKind.LLM, 2, {"tool_calls": "nope", "usage": None}),
        _step("tool:9:zz", StepKind.TOOL, 3, None),
    ]
    spans = _by_name(derive_trace([_execution("a")], {"a": steps}).spans)
    assert spans["llm:1"].attributes["gen_ai.operation.name"] == "chat"
    assert "gen_ai.tool.name" not in spans["tool:9:zz"].attributes


# ---------------------------------------------------------------------- export


def test_readable_span__same_ids_parent_and_nanosecond_times() -> None:
    root = _execution("root")
    child = _execution("kid", root_id="root", parent_id="root", parent_step_key="ship")
    span = derive_trace([child], {}).spans[0]
    sdk = readable_span(span, Resource.create({"service.name": "t"}))
    assert sdk.context is not None and sdk.parent is not None
    assert f"{sdk.context.trace_id:032x}" == trace_id("root")
    assert f"{sdk.context.span_id:016x}" == execution_span_id("kid")
    assert f"{sdk.parent.span_id:016x}" == step_span_id("root", "ship")
    assert (sdk.start_time, sdk.end_time) == (1_010_000_000, 2_000_000_000)
    assert sdk.status.status_code == StatusCode.OK
    assert sdk.attributes is not None and sdk.attributes["polos.span.kind"] == "execution"
    assert root.id == "root"


def test_export_configuration__follows_the_otel_variables() -> None:
    assert not export_configured({})
    assert export_configured({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"})
    assert export_configured({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"})
    on = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}
    assert not export_configured({**on, "OTEL_SDK_DISABLED": "true"})
    assert not export_configured({**on, "OTEL_TRACES_EXPORTER": "none"})
    assert make_resource({}, "o1").attributes["service.name"] == "polos-orchestrator"
    assert make_resource({}, "o1").attributes["service.instance.id"] == "o1"


async def test_exporter_queue__keeps_terminal_ids_and_drops_with_a_warning_when_full(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = TraceExporter(
        None,  # type: ignore[arg-type]  # the store is only read by the (unstarted) task
        InMemorySpanExporter(),
        Resource.create({}),
        max_queue=2,
    )
    with caplog.at_level(logging.WARNING, "polos.orchestrator.tracing"):
        exporter.on_transitions(
            [
                Transition("a", "queued"),
                Transition("b", "completed"),
                Transition("c", "failed"),
                Transition("d", "cancelled"),
            ]
        )
    assert list(exporter._queue) == ["b", "c"]
    assert "trace export queue full" in caplog.text
    await exporter.close(timeout=0.1)


def test_spans__credentials_in_errors_and_attributes_are_redacted() -> None:
    key = "sk-proj-" + "Zx9" * 10
    failed = _step(
        "guardrail:1:0",
        StepKind.RUN,
        1,
        {"passed": False, "reason": f"the answer leaks {key}"},
        error=ErrorInfo(type="ValueError", message=f"provider refused key {key}"),
    )
    span = step_span(_execution("e1"), failed, {})
    assert key not in span.model_dump_json()
    assert "[REDACTED]" in (span.status_message or "")
