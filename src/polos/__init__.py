"""Polos: durable execution for AI agents and workflows, in plain async Python.

The public SDK surface::

    from polos import PolosClient, Worker, WorkflowContext, workflow

    @workflow
    async def greet(ctx: WorkflowContext, name: str) -> str:
        return await ctx.step.run("hello", lambda: f"hello {name}")
"""

from polos._version import __version__
from polos.client import ExecutionHandle, PolosClient
from polos.errors import (
    ApiError,
    ChildWorkflowError,
    ConfigurationError,
    ExecutionCancelled,
    ExecutionNotFoundError,
    NonDeterminismError,
    NotWaitingError,
    OrchestratorUnavailableError,
    PayloadValidationError,
    PolosError,
    SerializationError,
    StepExecutionError,
    StepTimeoutError,
    TimeoutError,
    WaitTimeoutError,
    WorkflowCancelledError,
    WorkflowFailedError,
    WorkflowNotFoundError,
    WorkflowTimeoutError,
)
from polos.protocol import (
    Event,
    Execution,
    ExecutionStatus,
    Schedule,
    SchedulePayload,
    StepRecord,
    WaitInfo,
    WaitKind,
)
from polos.sdk import (
    BatchEventPayload,
    BatchStepResult,
    BatchWorkflowInput,
    ChildHandle,
    EventPayload,
    Queue,
    RateLimit,
    RateLimitGrant,
    ResumeData,
    RetryPolicy,
    StepInfo,
    Workflow,
    WorkflowContext,
    current_step,
    queue,
    workflow,
)
from polos.worker import Worker

__all__ = [
    "ApiError",
    "BatchEventPayload",
    "BatchStepResult",
    "BatchWorkflowInput",
    "ChildHandle",
    "ChildWorkflowError",
    "ConfigurationError",
    "Event",
    "EventPayload",
    "Execution",
    "ExecutionCancelled",
    "ExecutionHandle",
    "ExecutionNotFoundError",
    "ExecutionStatus",
    "NonDeterminismError",
    "NotWaitingError",
    "OrchestratorUnavailableError",
    "PayloadValidationError",
    "PolosClient",
    "PolosError",
    "Queue",
    "RateLimit",
    "RateLimitGrant",
    "ResumeData",
    "RetryPolicy",
    "Schedule",
    "SchedulePayload",
    "SerializationError",
    "StepExecutionError",
    "StepInfo",
    "StepRecord",
    "StepTimeoutError",
    "TimeoutError",
    "WaitInfo",
    "WaitKind",
    "WaitTimeoutError",
    "Worker",
    "Workflow",
    "WorkflowCancelledError",
    "WorkflowContext",
    "WorkflowFailedError",
    "WorkflowNotFoundError",
    "WorkflowTimeoutError",
    "__version__",
    "current_step",
    "queue",
    "workflow",
]
