"""Wire models shared by every process: statuses, errors, retry policies, step records."""

from __future__ import annotations

import enum
import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

API_PREFIX = "/api/v1"
"""Every public route lives under this versioned prefix."""

PROJECT_HEADER = "X-Polos-Project"
"""Header carrying the caller's project id (the default project when absent)."""

DEFAULT_PROJECT_ID = "default"
"""Id of the project created on first start."""


def now_ms() -> int:
    """Current UTC time as epoch milliseconds (the unit of every stored time)."""
    return time.time_ns() // 1_000_000


class ExecutionStatus(enum.StrEnum):
    """Lifecycle of an execution.

    ``queued → running → completed | failed | cancelled``; a running execution
    whose worker dies goes back to ``queued`` (a new attempt), and one that reaches a
    wait step is ``waiting`` until the wait ends, then ``queued`` again.
    """

    QUEUED = "queued"
    """Waiting for a worker to claim it: new, backing off before a retry, resumed after a
    wait, or back after its worker died."""
    RUNNING = "running"
    """Claimed by a worker; an attempt is in progress."""
    WAITING = "waiting"
    """Parked at a wait step (suspend, sleep, event, children, rate limit), holding no
    worker."""
    COMPLETED = "completed"
    """Finished: the workflow returned; ``result`` holds its value."""
    FAILED = "failed"
    """Finished: it raised with no retry left, timed out, or its workers died too often;
    ``error`` says why."""
    CANCELLED = "cancelled"
    """Finished: cancelled (itself or with an ancestor); ``cancelled_by`` says by whom."""

    @property
    def is_terminal(self) -> bool:
        """Whether the execution can never change again."""
        return self in (
            ExecutionStatus.COMPLETED,
            ExecutionStatus.FAILED,
            ExecutionStatus.CANCELLED,
        )


TERMINAL_STATUSES = frozenset(
    {ExecutionStatus.COMPLETED, ExecutionStatus.FAILED, ExecutionStatus.CANCELLED}
)


class StepKind(enum.StrEnum):
    """What a recorded step was; replay checks the kind at each key."""

    RUN = "run"
    UUID = "uuid"
    NOW = "now"
    RANDOM = "random"
    SUSPEND = "suspend"
    WAIT_EVENT = "wait_event"
    SLEEP = "sleep"
    INVOKE = "invoke"
    INVOKE_WAIT = "invoke_wait"
    PUBLISH = "publish"
    ACQUIRE = "acquire"
    LLM = "llm"
    TOOL = "tool"


class ErrorInfo(BaseModel):
    """A serialisable description of an exception."""

    model_config = ConfigDict(frozen=True)

    type: str = Field(description="Qualified name of the exception class, e.g. 'ValueError'.")
    message: str = Field(description="str() of the exception.")
    traceback: str | None = Field(default=None, description="Formatted traceback, when known.")


class RetryPolicySpec(BaseModel):
    """Serialisable retry policy (the SDK's ``RetryPolicy`` maps onto this)."""

    max_attempts: int = Field(default=1, ge=1, le=10_000)
    initial_interval_ms: int = Field(default=1000, ge=0)
    backoff_coefficient: float = Field(default=2.0, ge=1.0)
    max_interval_ms: int = Field(default=60_000, ge=0)
    jitter: float = Field(default=0.2, ge=0.0, le=1.0)

    def delay_ms(self, attempt: int, unit_random: float = 0.5) -> int:
        """Backoff before attempt ``attempt + 1``, after ``attempt`` failures (1-based).

        ``unit_random`` in [0, 1) spreads the delay by ±``jitter`` (0.5 = no spread).
        """
        base = self.initial_interval_ms * self.backoff_coefficient ** max(0, attempt - 1)
        base = min(base, float(self.max_interval_ms))
        spread = 1.0 + self.jitter * (2.0 * unit_random - 1.0)
        return max(0, round(base * spread))


class StepRecord(BaseModel):
    """One entry of an execution's step log."""

    key: str = Field(description="Step key with its occurrence suffix ('charge', 'charge#2').")
    """Step key with its occurrence suffix (``'charge'``, then ``'charge#2'`` for the second
    step with that key)."""
    seq: int = Field(description="Order in which the step was first recorded (1-based).")
    """Order in which the step was first recorded (1-based)."""
    kind: StepKind
    """What the step was (``run``, ``llm``, ``tool``, ``sleep``, ``suspend``, ``wait_event``,
    ``invoke``, ``uuid``...); replay checks it at each key."""
    output: Any = None
    """The step's JSON result (for a wait step: what ended the wait); None when it failed."""
    output_type: str | None = Field(
        default=None,
        description="'module:QualName' of the output's class, to rebuild it on replay.",
    )
    """``'module:QualName'`` of the output's class, to rebuild it on replay."""
    error: ErrorInfo | None = None
    """Why the step failed (after its retries); None when it succeeded."""
    attempts: int = 1
    """How many times the step ran (1 plus its retries)."""
    started_at: int | None = None
    """When the step started (epoch ms)."""
    completed_at: int | None = None
    """When the step's outcome was recorded (epoch ms)."""
    has_state: bool = Field(default=False, description="Whether 'state' holds a snapshot.")
    """Whether ``state`` holds a snapshot (only when ``ctx.state`` changed since the last
    one)."""
    state: Any = None
    """Snapshot of ``ctx.state`` taken when the step was recorded, restored on replay."""
