"""Messages on the worker channel: one WebSocket per worker at ``/api/v1/workers/connect``.

The worker opens the socket (outbound only), says :class:`Hello`, and receives
:class:`Welcome`. The orchestrator then pushes :class:`Task` messages; the worker
answers each write (:class:`RecordStep`, :class:`Complete`, :class:`Fail`,
:class:`Release`) with a request id, acknowledged by :class:`Ack` once the
write is durable. Every write carries the lease ``epoch`` of the execution; a
write whose epoch no longer matches is refused with ``Ack(code="stale")``.

:class:`Emit` (live events, ``ctx.emit``) is the one worker message that is not a
write: it has no request id, is never acknowledged nor re-sent, and the
orchestrator drops it silently unless the sender still runs the execution under
that epoch.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, TypeAdapter

from ._common import ErrorInfo, RetryPolicySpec, StepKind, StepRecord
from ._events import TOPIC_MAX_LENGTH, TOPIC_PATTERN, WaitKind
from ._flow import NAME_PATTERN, RateLimitSpec

CHANNEL_VERSION = 1
"""Bumped when the channel changes incompatibly; the orchestrator rejects other versions."""


class WorkflowSpec(BaseModel):
    """What a worker tells the orchestrator about one workflow it serves."""

    id: str = Field(min_length=1, max_length=200)
    kind: Literal["workflow", "agent", "tool"] = "workflow"
    fingerprint: str = Field(
        description="Hash of the workflow's code, to flag replays under changed code."
    )
    retry: RetryPolicySpec = Field(default_factory=RetryPolicySpec)
    max_recovery_attempts: int = Field(default=20, ge=1)
    description: str | None = None
    options: dict[str, Any] = Field(
        default_factory=dict,
        description="Further decorator options (queue, trigger_on_event, schedule...), stored as given.",
    )


class ActiveLease(BaseModel):
    """An execution a (re)connecting worker is still running."""

    execution_id: str
    epoch: int


class Hello(BaseModel):
    """First message of a worker on a new connection."""

    type: Literal["hello"] = "hello"
    version: int = CHANNEL_VERSION
    worker_id: str = Field(min_length=1, max_length=100)
    name: str = ""
    hostname: str = ""
    pid: int = 0
    max_concurrent: int = Field(default=100, ge=1, le=100_000)
    workflows: list[WorkflowSpec]
    active: list[ActiveLease] = Field(default_factory=list)
    rate_limits: list[RateLimitSpec] = Field(
        default_factory=list,
        description="Rate limits the worker defines (``Worker(rate_limits=)``).",
    )


class Heartbeat(BaseModel):
    """Sent by the worker every ``heartbeat_ms``; renews its lease."""

    type: Literal["heartbeat"] = "heartbeat"


class ChildSpec(BaseModel):
    """A child execution to start along with a step (``invoke``, ``invoke_and_wait``)."""

    execution_id: str = Field(
        min_length=1,
        max_length=100,
        description="Derived from the parent's id, the step key and the index, so that a "
        "replay or a re-sent message never starts a second child.",
    )
    workflow_id: str = Field(min_length=1, max_length=200)
    payload: Any = None
    index: int = Field(default=0, ge=0, description="Position in a batch (results keep it).")
    queue: str | None = Field(default=None, min_length=1, max_length=200, pattern=NAME_PATTERN)
    concurrency_key: str | None = Field(default=None, min_length=1, max_length=500)
    priority: int = Field(default=0, ge=-1000, le=1000)
    has_state: bool = False
    initial_state: Any = None
    run_timeout_ms: int | None = Field(
        default=None, gt=0, le=366 * 24 * 3600 * 1000, description="The child's run timeout."
    )


class PublishSpec(BaseModel):
    """An event to publish along with a step (``publish_event``)."""

    topic: str = Field(min_length=1, max_length=TOPIC_MAX_LENGTH, pattern=TOPIC_PATTERN)
    data: Any = None


class RecordStep(BaseModel):
    """Append one completed step to an execution's log.

    With ``publish`` or ``children``, the event is published / the children are
    started in the same transaction as the record: both happen, once, or neither.
    """

    type: Literal["step"] = "step"
    req: int
    execution_id: str
    epoch: int
    step: StepRecord
    publish: PublishSpec | None = None
    children: list[ChildSpec] = Field(default_factory=list, max_length=1000)


class WaitSpec(BaseModel):
    """What a parked execution waits for."""

    kind: WaitKind
    topic: str | None = Field(
        default=None, min_length=1, max_length=TOPIC_MAX_LENGTH, pattern=TOPIC_PATTERN
    )
    data: Any = Field(default=None, description="suspend(): shown to whoever resumes it.")
    expires_at: int | None = Field(
        default=None, description="Timeout, or for sleeps the wake-up time (epoch ms)."
    )


class Wait(BaseModel):
    """Park the execution at a wait step; once acknowledged, the attempt is over.

    The orchestrator records the wait (and starts ``children``) in one
    transaction, sets the execution ``waiting`` and frees the worker's slot.
    When the wait is satisfied (resume, event, timer, children done) or times
    out, it records the step's outcome and queues the execution again, which
    replays up to the wait step and goes on.
    """

    type: Literal["wait"] = "wait"
    req: int
    execution_id: str
    epoch: int
    key: str
    seq: int
    kind: StepKind
    started_at: int
    wait: WaitSpec
    children: list[ChildSpec] = Field(default_factory=list, max_length=1000)
    has_state: bool = False
    state: Any = None


class Complete(BaseModel):
    """The workflow returned: record its result and end the execution."""

    type: Literal["complete"] = "complete"
    req: int
    execution_id: str
    epoch: int
    result: Any = None
    has_state: bool = False
    state: Any = None


class Fail(BaseModel):
    """The workflow raised: retry it per its policy or end it ``failed``."""

    type: Literal["fail"] = "fail"
    req: int
    execution_id: str
    epoch: int
    error: ErrorInfo
    retryable: bool = True
    has_state: bool = False
    state: Any = None


class Release(BaseModel):
    """Give an execution back without counting an attempt (graceful shutdown)."""

    type: Literal["release"] = "release"
    req: int
    execution_id: str
    epoch: int


EMIT_MAX_ITEMS = 1000
"""Most items one :class:`Emit` message may carry (workers send far fewer, see the worker)."""


class Emit(BaseModel):
    """Live events from a running execution (``ctx.emit``): append ``items`` to ``topic``.

    Fire and forget: no ``req``, no :class:`Ack`, never re-sent after a reconnect.
    Each item becomes one event of the topic's log, in order, with
    ``source_execution_id`` set and no idempotency key; the events are ordinary
    (they start ``trigger_on_event`` workflows and end ``wait_for_event`` waits).
    The orchestrator drops the message unless ``execution_id`` is still running on
    the sending worker under ``epoch``, so a fenced-off (zombie) attempt cannot
    stream into a topic. Emits an attempt sent before its end-of-attempt write
    (``Complete``, ``Fail``, ``Wait``, ``Release``) or before a step that publishes
    an event are written before that write.
    """

    type: Literal["emit"] = "emit"
    execution_id: str = Field(min_length=1, max_length=100)
    epoch: int
    topic: str = Field(min_length=1, max_length=TOPIC_MAX_LENGTH, pattern=TOPIC_PATTERN)
    items: list[Any] = Field(min_length=1, max_length=EMIT_MAX_ITEMS)


class Drain(BaseModel):
    """The worker is shutting down: send it no more tasks."""

    type: Literal["drain"] = "drain"


WorkerMessage = Annotated[
    Hello | Heartbeat | Drain | RecordStep | Wait | Complete | Fail | Release | Emit,
    Field(discriminator="type"),
]
worker_message_adapter: TypeAdapter[WorkerMessage] = TypeAdapter(WorkerMessage)


class Welcome(BaseModel):
    """The orchestrator accepted the worker."""

    type: Literal["welcome"] = "welcome"
    worker_id: str
    project_id: str
    orchestrator_id: str
    heartbeat_ms: int
    lease_ms: int
    abandon: list[str] = Field(
        default_factory=list,
        description="Executions from Hello.active the worker no longer owns: stop running them.",
    )
    features: list[str] = Field(
        default_factory=list,
        description="Optional worker messages this orchestrator accepts (``emit``). A worker "
        "does not send the others: an older orchestrator would refuse them as invalid.",
    )


class Task(BaseModel):
    """Run (or replay) one execution. Carries the whole recorded history."""

    type: Literal["task"] = "task"
    execution_id: str
    workflow_id: str
    epoch: int
    attempt: int
    payload: Any = None
    has_state: bool = False
    state: Any = None
    history: list[StepRecord] = Field(default_factory=list)
    parent_id: str | None = None
    root_id: str | None = None
    created_at: int = 0
    code_fingerprint: str | None = None
    trigger: Any = Field(
        default=None,
        description="For executions started by an event: the event(s) without their data "
        "(the payload holds the data).",
    )


class Ack(BaseModel):
    """Outcome of a write.

    ``ok``: applied. ``stale``: the lease was lost, nothing changed. ``error``: the
    orchestrator could not write now (the worker re-sends it). ``rejected``: the
    write can never succeed (e.g. a child of an unregistered workflow); ``message``
    says why and the workflow sees an exception.
    """

    type: Literal["ack"] = "ack"
    req: int
    code: Literal["ok", "stale", "error", "rejected"] = "ok"
    message: str = ""
    value: Any = Field(
        default=None, description="What the write produced, e.g. the event a publish step made."
    )


class Cancel(BaseModel):
    """Stop running an execution (cancelled by a user, or its lease moved elsewhere)."""

    type: Literal["cancel"] = "cancel"
    execution_id: str
    reason: str = "cancelled"


class Goodbye(BaseModel):
    """The orchestrator refuses or ends the connection, saying why."""

    type: Literal["goodbye"] = "goodbye"
    reason: str
    fatal: bool = Field(
        default=False,
        description="True when reconnecting cannot help (bad version, unknown project).",
    )


OrchestratorMessage = Annotated[
    Welcome | Task | Ack | Cancel | Goodbye, Field(discriminator="type")
]
orchestrator_message_adapter: TypeAdapter[OrchestratorMessage] = TypeAdapter(OrchestratorMessage)
