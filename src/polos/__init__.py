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
    ConfigurationError,
    ExecutionCancelled,
    ExecutionNotFoundError,
    NonDeterminismError,
    OrchestratorUnavailableError,
    PayloadValidationError,
    PolosError,
    SerializationError,
    StepExecutionError,
    TimeoutError,
    WorkflowCancelledError,
    WorkflowFailedError,
    WorkflowNotFoundError,
)
from polos.protocol import Execution, ExecutionStatus, StepRecord
from polos.sdk import (
    Queue,
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
    "ConfigurationError",
    "Execution",
    "ExecutionCancelled",
    "ExecutionHandle",
    "ExecutionNotFoundError",
    "ExecutionStatus",
    "NonDeterminismError",
    "OrchestratorUnavailableError",
    "PayloadValidationError",
    "PolosClient",
    "PolosError",
    "Queue",
    "RetryPolicy",
    "SerializationError",
    "StepExecutionError",
    "StepInfo",
    "StepRecord",
    "TimeoutError",
    "Worker",
    "Workflow",
    "WorkflowCancelledError",
    "WorkflowContext",
    "WorkflowFailedError",
    "WorkflowNotFoundError",
    "__version__",
    "current_step",
    "queue",
    "workflow",
]
