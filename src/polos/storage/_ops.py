"""Write operations applied by the batched writer, and their results.

Every write that can happen often goes through :class:`~polos.storage.WriteBatcher`
as one of these values, so that concurrent writes share one transaction (group
commit). Each op gets its own result; a stale-lease write gets ``STALE``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from polos.protocol import (
    ChildSpec,
    ErrorInfo,
    Event,
    Execution,
    PublishSpec,
    StepKind,
    StepRecord,
    Task,
    WaitSpec,
)

OK = "ok"
"""The write was applied (or had already been applied by the same lease)."""

STALE = "stale"
"""The write carried a lease epoch that no longer owns the execution; nothing changed."""


@dataclass(frozen=True, slots=True)
class CreateExecution:
    """Start an execution (idempotent on ``idempotency_key``)."""

    project_id: str
    workflow_id: str
    payload_json: str
    idempotency_key: str | None = None
    queue: str | None = None
    concurrency_key: str | None = None
    priority: int = 0
    state_json: str | None = None
    parent_id: str | None = None
    root_id: str | None = None
    parent_step_key: str | None = None
    execution_id: str | None = None
    """A given id (children: derived from the parent); None: a fresh one."""
    parent_index: int | None = None
    trigger_event_json: str | None = None
    run_timeout_ms: int | None = None
    """Run timeout of this execution; None: the workflow's ``timeout`` (if any)."""
    timeout_counts_waits: bool | None = None
    """Whether time parked in waits counts against the run timeout; None: the workflow's."""
    schedule_id: str | None = None
    """The schedule that started this execution."""


@dataclass(frozen=True, slots=True)
class Created:
    """Result of :class:`CreateExecution`."""

    execution: Execution
    created: bool


@dataclass(frozen=True, slots=True)
class RecordStepOp:
    """Append a step record, fenced by the lease epoch.

    With ``publish`` / ``children``, the event is published / the children are
    created in the same transaction (idempotent when the record is re-sent).
    """

    execution_id: str
    epoch: int
    step: StepRecord
    publish: PublishSpec | None = None
    children: tuple[ChildSpec, ...] = ()


@dataclass(frozen=True, slots=True)
class WaitOp:
    """Park a running execution at a wait step (fenced); ends the attempt."""

    execution_id: str
    epoch: int
    key: str
    seq: int
    step_kind: StepKind
    started_at: int
    spec: WaitSpec
    children: tuple[ChildSpec, ...] = ()
    state_json: str | None = None
    project_id: str = ""
    """The worker's project (set by the orchestrator; rate limits are looked up in it)."""


@dataclass(frozen=True, slots=True)
class Granted:
    """Result of an acquire :class:`WaitOp` whose units were granted at once: the execution
    keeps running and the step is recorded with ``output_json``."""

    output_json: str


@dataclass(frozen=True, slots=True)
class PublishOp:
    """Append an event to a topic's log; start triggered workflows; satisfy event waits."""

    project_id: str
    topic: str
    data_json: str
    idempotency_key: str | None = None
    source_execution_id: str | None = None


@dataclass(frozen=True, slots=True)
class Published:
    """Result of :class:`PublishOp`."""

    event: Event
    created: bool
    triggered: list[str] = field(default_factory=list)
    project_id: str = ""


@dataclass(frozen=True, slots=True)
class ResumeOp:
    """Resume an execution suspended at ``step_key`` with ``data``."""

    project_id: str
    execution_id: str
    step_key: str
    data_json: str
    resumed_by: str | None = None
    comment: str | None = None
    exact: bool = False  # approval links: match step_key with its occurrence suffix only


@dataclass(frozen=True, slots=True)
class Resumed:
    """Result of :class:`ResumeOp`: the execution (None: unknown) and whether it resumed."""

    execution: Execution | None
    resumed: bool
    message: str = ""


@dataclass(frozen=True, slots=True)
class FireDueOp:
    """Fire due timers, time out expired waits and executions, flush due trigger batches."""

    limit: int = 500


@dataclass(frozen=True, slots=True)
class Fired:
    """Result of :class:`FireDueOp`: how many waits ended and executions were started."""

    waits: int
    started: int
    timed_out: int = 0
    """Executions failed because they ran out of their run timeout."""
    stop: list[tuple[str, str, str]] = field(default_factory=list)
    """Executions the sweep ended while a worker ran them: (worker id, execution id, reason)."""


@dataclass(frozen=True, slots=True)
class Rejected:
    """The op can never succeed as given (e.g. a child of an unregistered workflow)."""

    message: str
    code: str = "workflow_not_found"
    """``workflow_not_found`` or ``invalid_value``."""


@dataclass(frozen=True, slots=True)
class CompleteOp:
    """End an execution ``completed``, fenced by the lease epoch."""

    execution_id: str
    epoch: int
    result_json: str
    state_json: str | None = None


@dataclass(frozen=True, slots=True)
class FailOp:
    """Record a failed attempt: requeue per the retry policy, or end ``failed``."""

    execution_id: str
    epoch: int
    error: ErrorInfo
    retryable: bool
    state_json: str | None = None
    unit_random: float = 0.5


@dataclass(frozen=True, slots=True)
class ReleaseOp:
    """Give an execution back to the queue without counting an attempt."""

    execution_id: str
    epoch: int


@dataclass(frozen=True, slots=True)
class ClaimOp:
    """Claim up to ``limit`` runnable executions for one worker."""

    project_id: str
    worker_id: str
    limit: int


@dataclass(frozen=True, slots=True)
class CancelOp:
    """Cancel an execution that has not finished."""

    project_id: str
    execution_id: str
    cancelled_by: str


@dataclass(frozen=True, slots=True)
class Cancelled:
    """Result of :class:`CancelOp`: the execution after the call, and the worker to notify."""

    execution: Execution | None
    changed: bool
    worker_id: str | None = None
    descendants: list[tuple[str, str | None]] = field(default_factory=list)
    """Children (and their children...) cancelled with it: (execution id, worker id)."""


@dataclass(slots=True)
class Transition:
    """An execution reached a new status as a side effect of a write (for waiters)."""

    execution_id: str
    status: str


WriteOp = (
    CreateExecution
    | RecordStepOp
    | WaitOp
    | CompleteOp
    | FailOp
    | ReleaseOp
    | ClaimOp
    | CancelOp
    | PublishOp
    | ResumeOp
    | FireDueOp
)
WriteResult = (
    Created | str | list[Task] | Cancelled | Published | Resumed | Fired | Rejected | Granted
)


@dataclass(slots=True)
class BatchOutcome:
    """Results of one batch, in op order, plus status transitions it caused."""

    results: list[WriteResult | BaseException]
    transitions: list[Transition] = field(default_factory=list)
