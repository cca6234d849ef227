"""Request and response bodies of the public HTTP API (``/api/v1``)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from polos.errors import ConfigurationError

from ._common import ErrorInfo, ExecutionStatus, StepRecord
from ._flow import NAME_PATTERN

MAX_RUN_TIMEOUT_SECONDS = 366 * 24 * 3600
"""The longest run timeout an execution may have (a year)."""


def run_timeout_ms(value: float | timedelta | None, what: str = "run_timeout") -> int | None:
    """A run timeout in milliseconds, validated (seconds or a timedelta; None: none).

    Raises:
        ConfigurationError: not positive, longer than a year, or not a duration.
    """
    raw: object = value  # callers may pass anything at run time
    if raw is None:
        return None
    if isinstance(raw, timedelta):
        seconds = raw.total_seconds()
    elif isinstance(raw, int | float) and not isinstance(raw, bool):
        seconds = float(raw)
    else:
        raise ConfigurationError(f"{what} must be seconds or a timedelta, not {type(raw).__name__}")
    if not 0 < seconds <= MAX_RUN_TIMEOUT_SECONDS:  # also refuses NaN
        raise ConfigurationError(
            f"{what} must be positive and at most {MAX_RUN_TIMEOUT_SECONDS} s, not {seconds:g} s"
        )
    return max(1, round(seconds * 1000))


class InvokeRequest(BaseModel):
    """Start an execution of a workflow."""

    model_config = ConfigDict(extra="forbid")

    payload: Any = Field(default=None, description="JSON payload passed to the workflow.")
    idempotency_key: str | None = Field(
        default=None,
        min_length=1,
        max_length=500,
        description="Starting twice with the same key returns the first execution.",
    )
    queue: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        pattern=NAME_PATTERN,
        description="Run in this queue (its limits apply) instead of the workflow's.",
    )
    concurrency_key: str | None = Field(
        default=None,
        min_length=1,
        max_length=500,
        description="Limits per key of the queue (e.g. a tenant id); without a queue, the "
        "workflow's own queue is used.",
    )
    priority: int = Field(default=0, ge=-1000, le=1000)
    initial_state: Any = Field(default=None, description="Initial value of ctx.state.")
    run_timeout_seconds: float | None = Field(
        default=None,
        gt=0,
        le=MAX_RUN_TIMEOUT_SECONDS,
        allow_inf_nan=False,
        description="Fail the execution (polos.WorkflowTimeoutError) once it has run this long; "
        "overrides the workflow's own timeout.",
    )
    timeout_counts_waits: bool | None = Field(
        default=None,
        description="Whether time parked at waits (suspend, sleep, events, children) counts "
        "against the run timeout; default: the workflow's setting (false unless it says so).",
    )


class BatchInvokeItem(InvokeRequest):
    """One execution to start in a batch."""

    workflow_id: str = Field(min_length=1, max_length=200)


class BatchInvokeRequest(BaseModel):
    """Start many executions with one request (all in one transaction)."""

    model_config = ConfigDict(extra="forbid")

    items: list[BatchInvokeItem] = Field(min_length=1, max_length=1000)


class WaitRequest(BaseModel):
    """Wait until every listed execution has finished (or ``timeout`` passes)."""

    model_config = ConfigDict(extra="forbid")

    ids: list[str] = Field(min_length=1, max_length=1000)
    timeout: float = Field(default=30.0, ge=0, le=60, description="Seconds to wait at most.")


class AttemptInfo(BaseModel):
    """One finished attempt of an execution that did not succeed."""

    attempt: int
    outcome: str = Field(description="failed | crashed | released | timed_out | retried")
    worker_id: str | None = None
    ended_at: int
    error: ErrorInfo | None = None


class Execution(BaseModel):
    """An execution as the API shows it. Times are epoch milliseconds (UTC)."""

    id: str
    """Unique id of the execution."""
    project_id: str
    """The project it belongs to."""
    workflow_id: str
    """The workflow (or agent) it runs."""
    status: ExecutionStatus
    """Where it is in its lifecycle: queued, running, waiting, completed, failed or cancelled."""
    payload: Any = None
    """The JSON payload it was started with."""
    result: Any = None
    """The workflow's return value (JSON), once it has completed; None until then."""
    error: ErrorInfo | None = None
    """Why it ended failed or cancelled (type, message, traceback); None otherwise."""
    state: Any = None
    """Its latest recorded ``ctx.state`` (JSON): the initial state until a step, a wait or
    the end of an attempt records a change."""
    attempt: int = Field(description="How many times the execution was claimed by a worker.")
    """How many times the execution was claimed by a worker (0 until the first claim; a
    retry call does not reset it)."""
    failed_attempts: int = 0
    """Attempts that ended with the workflow raising, counted against its retry policy's
    ``max_attempts``; a retry call resets it."""
    crashed_attempts: int = 0
    """Attempts lost because their worker died or lost its lease, counted against
    ``max_recovery_attempts``; a retry call resets it."""
    attempts: list[AttemptInfo] = Field(default_factory=list)
    """The attempts that did not succeed (failed, crashed, released, timed out or retried),
    oldest first."""
    worker_id: str | None = None
    """The worker running it now; None unless it is running."""
    parent_id: str | None = None
    """For a child execution: the execution that started it; None for a top-level one."""
    root_id: str | None = None
    """The top-level execution of its tree (its own id for a top-level execution)."""
    parent_step_key: str | None = Field(
        default=None, description="For a child: the parent's step that started it."
    )
    """For a child: the parent's step that started it."""
    trigger_event: Any = Field(
        default=None,
        description="For an execution started by an event: the event (or, for a batch, the "
        "events) without data (the payload holds it).",
    )
    """For an execution started by an event: the event (or, for a batch, the events)
    without data (the payload holds it)."""
    idempotency_key: str | None = None
    """The idempotency key it was started with, if any (starting again with the same key
    returns this execution)."""
    queue: str | None = None
    """The queue it runs in (its limits apply): the one given when it was started, else the
    workflow's; None when neither has one (no queue limits)."""
    concurrency_key: str | None = None
    """The key its queue's concurrency limit is counted per (e.g. a tenant id), if any."""
    priority: int = 0
    """Claim order among queued executions: higher first, then the earliest available."""
    code_fingerprint: str | None = None
    """Hash of the workflow code that first ran it (recorded at its first claim)."""
    code_changed: bool = Field(
        default=False, description="True when a later attempt ran under different workflow code."
    )
    """True when a later attempt ran under different workflow code (another
    ``code_fingerprint``)."""
    created_at: int
    """When it was created."""
    started_at: int | None = None
    """When a worker first claimed it; None until then (later attempts keep it)."""
    completed_at: int | None = None
    """When it ended (completed, failed or cancelled); None while unfinished."""
    updated_at: int
    """When its record last changed (status, state, attempts...)."""
    available_at: int = Field(description="When a queued execution may next be claimed.")
    """When a queued execution may next be claimed (later than now while a retry backs
    off)."""
    cancelled_by: str | None = Field(
        default=None,
        description="Who cancelled it and why ('api', 'alice: reason', 'ancestor <id> "
        "cancelled by api', 'ancestor <id> timed out'...); completed_at says when.",
    )
    """Who cancelled it and why (``'api'``, ``'alice: reason'``, ``'ancestor <id> cancelled
    by api'``, ``'ancestor <id> timed out'``...); ``completed_at`` says when. None unless
    cancelled."""
    run_timeout_ms: int | None = Field(
        default=None, description="Run timeout (the workflow's or the invocation's)."
    )
    """Run timeout in milliseconds (the invocation's, else the workflow's); None: none."""
    timeout_counts_waits: bool = Field(
        default=False, description="Whether time parked at waits counts against the run timeout."
    )
    """Whether time parked at waits counts against the run timeout."""
    deadline_at: int | None = Field(
        default=None,
        description="When the execution times out if it is still unfinished (set while it runs, "
        "and while it waits when waits count); null otherwise.",
    )
    """When the execution times out if it is still unfinished (set while it runs, and while
    it waits when waits count); None otherwise."""


class InvokeResponse(Execution):
    """The started (or, for a repeated idempotency key, the existing) execution."""

    created: bool = Field(
        description="False when the idempotency key matched an existing execution."
    )


class BatchInvokeResponse(BaseModel):
    """The executions of a batch, in request order."""

    items: list[InvokeResponse]


class ExecutionList(BaseModel):
    """Executions, in the order asked for."""

    items: list[Execution]


class ExecutionPage(BaseModel):
    """A page of executions, newest first."""

    items: list[Execution]
    next_cursor: str | None = Field(
        default=None, description="Pass as 'cursor' to get the next page."
    )


class StepList(BaseModel):
    """An execution's step log, in recording order."""

    items: list[StepRecord]


class WorkflowInfo(BaseModel):
    """A workflow some worker registered."""

    id: str
    kind: str
    fingerprint: str
    description: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    first_seen_at: int
    last_seen_at: int


class WorkflowList(BaseModel):
    """Registered workflows."""

    items: list[WorkflowInfo]


class WorkerInfo(BaseModel):
    """A worker that connected to some orchestrator."""

    id: str
    name: str
    hostname: str
    pid: int
    status: str = Field(description="connected | gone")
    max_concurrent: int
    running: int
    workflows: list[str]
    connected_at: int
    last_heartbeat_at: int
    lease_expires_at: int


class WorkerList(BaseModel):
    """Known workers."""

    items: list[WorkerInfo]


class RetryRequest(BaseModel):
    """Optional body of a retry call."""

    model_config = ConfigDict(extra="forbid")

    by: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Who retries (a user or service name); recorded in the attempt history "
        "(default 'api').",
    )


class CancelRequest(BaseModel):
    """Optional body of a cancel call."""

    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(default=None, max_length=1000, description="Why (recorded).")
    by: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Who cancels (a user or service name); recorded in cancelled_by "
        "(default 'api').",
    )


class ErrorBody(BaseModel):
    """Body of every 4xx/5xx answer."""

    code: str = Field(description="Stable machine-readable code, e.g. 'not_found'.")
    message: str = Field(description="What is wrong, in words.")


class Health(BaseModel):
    """Answer of GET /health."""

    status: str = "ok"
    version: str
    orchestrator_id: str
    database: str
