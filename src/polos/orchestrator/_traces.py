"""Spans derived from the step log: one trace per root execution.

Pure functions: the same executions, steps and waits always give the same spans, ids
included, so the API (:func:`derive_trace`) and the OTLP export (which derives the
spans of each finished execution alone) agree without storing anything.

* trace id: the first 32 hex digits of ``sha256("trace:" + root_id)``;
* execution span id: the first 16 of ``sha256("exec:" + execution_id)``;
* step span id: the first 16 of ``sha256("step:" + execution_id + ":" + step_key)``.

A step span's parent is its execution's span; a child execution's span has for parent
the span of the parent's step that started it (``parent_id`` + ``parent_step_key``),
whether that step is recorded yet or still an open wait: both have the same id.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

from polos._redact import redact, redact_text
from polos.protocol import (
    ErrorInfo,
    Execution,
    ExecutionStatus,
    SpanStatus,
    StepKind,
    StepRecord,
    TraceSpan,
    TraceView,
    WaitInfo,
)

from ._trace_attrs import (
    WAIT_KINDS,
    Attributes,
    agent_attributes,
    call_attributes,
    clip,
    decision_attributes,
    llm_attributes,
    tool_names,
)

_ZERO = "0" * 32


def _hex_id(seed: str, digits: int) -> str:
    """``digits`` hex digits of sha256(seed); never all zeros (an invalid OTel id)."""
    digest = hashlib.sha256(seed.encode()).hexdigest()
    for start in range(0, len(digest) - digits + 1, digits):
        chunk = digest[start : start + digits]
        if chunk != _ZERO[:digits]:
            return chunk
    return "0" * (digits - 1) + "1"  # pragma: no cover - needs a sha256 of all zeros


def trace_id(root_id: str) -> str:
    """The trace id of the tree rooted at ``root_id`` (32 hex digits)."""
    return _hex_id("trace:" + root_id, 32)


def execution_span_id(execution_id: str) -> str:
    """The span id of an execution (16 hex digits)."""
    return _hex_id("exec:" + execution_id, 16)


def step_span_id(execution_id: str, step_key: str) -> str:
    """The span id of one step of an execution (16 hex digits)."""
    return _hex_id(f"step:{execution_id}:{step_key}", 16)


def root_of(execution: Execution) -> str:
    """The root execution id of ``execution``'s tree."""
    return execution.root_id or execution.id


def _error(attrs: Attributes, error: ErrorInfo | None) -> str | None:
    """Record an error's type as ``error.type``; its message is the status message."""
    if error is None:
        return None
    attrs["error.type"] = error.type
    return clip(error.message)


def execution_span(execution: Execution) -> TraceSpan:
    """The span of a whole execution: from its first start (or creation) to its end."""
    attrs: Attributes = {
        "polos.execution.id": execution.id,
        "polos.workflow.id": execution.workflow_id,
        "polos.execution.status": execution.status.value,
        "polos.execution.attempts": execution.attempt,
        "polos.root.id": root_of(execution),
    }
    for name, value in (
        ("polos.parent.id", execution.parent_id),
        ("polos.parent.step_key", execution.parent_step_key),
        ("polos.queue", execution.queue),
        ("polos.cancelled_by", execution.cancelled_by),
    ):
        if value is not None:
            attrs[name] = value
    if execution.failed_attempts or execution.crashed_attempts:
        attrs["polos.execution.failed_attempts"] = execution.failed_attempts
        attrs["polos.execution.crashed_attempts"] = execution.crashed_attempts
    if execution.code_changed:
        attrs["polos.code_changed"] = True
    if execution.status == ExecutionStatus.COMPLETED:
        attrs.update(agent_attributes(execution.result))
    message = _error(attrs, execution.error)
    status: SpanStatus = "unset"
    if execution.status == ExecutionStatus.COMPLETED:
        status = "ok"
    elif execution.status in (ExecutionStatus.FAILED, ExecutionStatus.CANCELLED):
        status = "error"
    if execution.status == ExecutionStatus.CANCELLED and message is None:
        message = clip(f"cancelled by {execution.cancelled_by or 'unknown'}")
    parent = None
    if execution.parent_id is not None:
        parent = (
            step_span_id(execution.parent_id, execution.parent_step_key)
            if execution.parent_step_key is not None
            else execution_span_id(execution.parent_id)
        )
    end = execution.completed_at
    if end is None and execution.status.is_terminal:
        end = execution.updated_at
    return TraceSpan(
        trace_id=trace_id(root_of(execution)),
        span_id=execution_span_id(execution.id),
        parent_span_id=parent,
        name=execution.workflow_id,
        kind="execution",
        execution_id=execution.id,
        start_ms=execution.started_at or execution.created_at,
        end_ms=end,
        status=status,
        status_message=redact_text(message) if message else None,
        attributes=redact(attrs),  # secrets never leave in a span
    )


def step_span(
    execution: Execution, step: StepRecord, names: Mapping[tuple[str, str], str]
) -> TraceSpan:
    """The span of one recorded step; ``names`` maps (turn, call id) to tool names."""
    attrs: Attributes = {
        "polos.step.kind": step.kind.value,
        "polos.step.key": step.key,
        "polos.step.seq": step.seq,
        "polos.execution.id": execution.id,
    }
    if step.attempts > 1:
        attrs["polos.step.attempts"] = step.attempts
    wait = WAIT_KINDS.get(step.kind)
    if wait is not None:
        attrs["polos.wait.kind"] = wait.value
    if step.kind == StepKind.LLM:
        attrs.update(llm_attributes(step.output))
    attrs.update(call_attributes(step, names))
    attrs.update(decision_attributes(step))
    message = _error(attrs, step.error)
    start = step.started_at or step.completed_at or execution.started_at or execution.created_at
    return TraceSpan(
        trace_id=trace_id(root_of(execution)),
        span_id=step_span_id(execution.id, step.key),
        parent_span_id=execution_span_id(execution.id),
        name=step.key,
        kind="step",
        execution_id=execution.id,
        step_key=step.key,
        start_ms=start,
        end_ms=step.completed_at if step.completed_at is not None else start,
        status="error" if step.error is not None else "ok",
        status_message=redact_text(message) if message else None,
        attributes=redact(attrs),  # secrets never leave in a span
    )


def wait_span(execution: Execution, wait: WaitInfo) -> TraceSpan:
    """An open span for a wait step not recorded yet (the execution is parked at it)."""
    attrs: Attributes = {
        "polos.step.key": wait.step_key,
        "polos.execution.id": execution.id,
        "polos.wait.kind": wait.kind.value,
        "polos.wait.open": True,
    }
    for name, value in (
        ("polos.wait.topic", wait.topic),
        ("polos.wait.expires_at", wait.expires_at),
        ("polos.wait.pending_children", wait.pending_children),
    ):
        if value is not None:
            attrs[name] = value
    return TraceSpan(
        trace_id=trace_id(root_of(execution)),
        span_id=step_span_id(execution.id, wait.step_key),
        parent_span_id=execution_span_id(execution.id),
        name=wait.step_key,
        kind="step",
        execution_id=execution.id,
        step_key=wait.step_key,
        start_ms=wait.created_at,
        attributes=redact(attrs),  # secrets never leave in a span
    )


def execution_spans(
    execution: Execution, steps: Sequence[StepRecord], waits: Sequence[WaitInfo] = ()
) -> list[TraceSpan]:
    """The span of an execution, then its steps' spans in recording order, then open waits."""
    names = tool_names(steps)
    spans = [execution_span(execution)]
    spans.extend(step_span(execution, step, names) for step in steps)
    recorded = {step.key for step in steps}
    # A wait ends in the transaction that records its step: never both, but be safe.
    spans.extend(wait_span(execution, w) for w in waits if w.step_key not in recorded)
    return spans


def derive_trace(
    executions: Sequence[Execution],
    steps: Mapping[str, Sequence[StepRecord]],
    waits: Sequence[WaitInfo] = (),
    *,
    truncated: bool = False,
) -> TraceView:
    """The trace of a root's tree from its executions (parents first), steps and open waits."""
    if not executions:
        raise ValueError("a trace needs at least one execution")
    root_id = root_of(executions[0])
    by_execution: dict[str, list[WaitInfo]] = {}
    for wait in waits:
        by_execution.setdefault(wait.execution_id, []).append(wait)
    spans: list[TraceSpan] = []
    for execution in executions:
        spans.extend(
            execution_spans(
                execution, steps.get(execution.id, ()), by_execution.get(execution.id, ())
            )
        )
    return TraceView(trace_id=trace_id(root_id), root_id=root_id, spans=spans, truncated=truncated)
