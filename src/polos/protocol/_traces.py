"""Trace views: the spans of one root execution's tree, derived from the step log.

Spans are never stored: the orchestrator derives them from executions, recorded steps
and open waits (see ``docs/tracing.md``), with ids that are a pure function of the
execution ids and step keys, so that the API and the OTLP export agree.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

SpanKindName = Literal["execution", "step"]
"""What a span stands for: a whole execution, or one step of one."""

SpanStatus = Literal["ok", "error", "unset"]
"""OpenTelemetry's span status codes; ``unset`` while a span is still open."""


class TraceSpan(BaseModel):
    """One span of a trace (ids in lowercase hex, as OpenTelemetry prints them)."""

    trace_id: str = Field(description="32 hex digits; the same for every span of a root's tree.")
    span_id: str = Field(description="16 hex digits.")
    parent_span_id: str | None = Field(
        default=None,
        description="The parent span: a step span's execution, or for a child execution the "
        "parent's step that started it; null for the root execution.",
    )
    name: str = Field(description="The workflow id (execution spans) or the step key.")
    kind: SpanKindName
    execution_id: str
    step_key: str | None = Field(default=None, description="Null for execution spans.")
    start_ms: int = Field(description="Start, epoch milliseconds.")
    end_ms: int | None = Field(default=None, description="End; null while the span is open.")
    status: SpanStatus = "unset"
    status_message: str | None = Field(default=None, description="For errors: what failed.")
    attributes: dict[str, Any] = Field(
        default_factory=dict,
        description="OpenTelemetry attributes (polos.*, gen_ai.*, error.type).",
    )


class TraceView(BaseModel):
    """Every span of the trace of one root execution, parents before children."""

    trace_id: str
    root_id: str = Field(description="The root execution of the trace.")
    spans: list[TraceSpan]
    truncated: bool = Field(
        default=False,
        description="True when the tree has more executions than one trace view holds; "
        "the spans of the executions left out are missing.",
    )
