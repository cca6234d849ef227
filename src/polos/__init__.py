"""Polos: durable execution for AI agents and workflows, in plain async Python.

The public SDK surface::

    from polos import PolosClient, Worker, WorkflowContext, workflow

    @workflow
    async def greet(ctx: WorkflowContext, name: str) -> str:
        return await ctx.step.run("hello", lambda: f"hello {name}")
"""

# Only the cheap parts are imported eagerly. The SDK, the agents (and with them the openai
# and anthropic clients), the client and the worker are imported on first use, so that a
# process needing one part (the orchestrator, the CLI) does not pay for all of them.
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from polos._version import __version__
from polos.errors import (
    AgentError,
    ApiError,
    ChildWorkflowError,
    ConfigurationError,
    ExecutionCancelled,
    ExecutionNotFoundError,
    LLMAuthenticationError,
    LLMBadRequestError,
    LLMError,
    LLMRateLimitError,
    LLMUnavailableError,
    NonDeterminismError,
    NotRetryableError,
    NotWaitingError,
    OrchestratorUnavailableError,
    OutputValidationError,
    PayloadTooLargeError,
    PayloadValidationError,
    PolosError,
    SerializationError,
    SessionConflictError,
    StepExecutionError,
    StepTimeoutError,
    TimeoutError,
    WaitTimeoutError,
    WorkflowCancelledError,
    WorkflowFailedError,
    WorkflowNotFoundError,
    WorkflowTimeoutError,
)

if TYPE_CHECKING:
    from polos.agents import (
        Agent,
        AgentResult,
        AgentText,
        GuardrailResult,
        Handoff,
        HookResult,
        Tool,
        ask_user_tool,
        executed_tool,
        guardrail,
        has_text,
        max_steps,
        max_tokens,
        stop_condition,
        tool,
    )
    from polos.client import (
        ExecutionHandle,
        PolosClient,
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
    from polos.worker import (
        Worker,
    )

_LAZY: dict[str, str] = {
    "Agent": "polos.agents",
    "AgentResult": "polos.agents",
    "AgentText": "polos.agents",
    "ask_user_tool": "polos.agents",
    "BatchEventPayload": "polos.sdk",
    "BatchStepResult": "polos.sdk",
    "BatchWorkflowInput": "polos.sdk",
    "ChildHandle": "polos.sdk",
    "current_step": "polos.sdk",
    "Event": "polos.protocol",
    "EventPayload": "polos.sdk",
    "executed_tool": "polos.agents",
    "Execution": "polos.protocol",
    "ExecutionHandle": "polos.client",
    "ExecutionStatus": "polos.protocol",
    "guardrail": "polos.agents",
    "GuardrailResult": "polos.agents",
    "Handoff": "polos.agents",
    "has_text": "polos.agents",
    "HookResult": "polos.agents",
    "max_steps": "polos.agents",
    "max_tokens": "polos.agents",
    "PolosClient": "polos.client",
    "Queue": "polos.sdk",
    "queue": "polos.sdk",
    "RateLimit": "polos.sdk",
    "RateLimitGrant": "polos.sdk",
    "ResumeData": "polos.sdk",
    "RetryPolicy": "polos.sdk",
    "Schedule": "polos.protocol",
    "SchedulePayload": "polos.protocol",
    "StepInfo": "polos.sdk",
    "StepRecord": "polos.protocol",
    "stop_condition": "polos.agents",
    "Tool": "polos.agents",
    "tool": "polos.agents",
    "WaitInfo": "polos.protocol",
    "WaitKind": "polos.protocol",
    "Worker": "polos.worker",
    "Workflow": "polos.sdk",
    "workflow": "polos.sdk",
    "WorkflowContext": "polos.sdk",
}


def __getattr__(name: str) -> Any:
    """Import a public name's module the first time the name is used."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'polos' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "Agent",
    "AgentError",
    "AgentResult",
    "AgentText",
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
    "GuardrailResult",
    "Handoff",
    "HookResult",
    "LLMAuthenticationError",
    "LLMBadRequestError",
    "LLMError",
    "LLMRateLimitError",
    "LLMUnavailableError",
    "NonDeterminismError",
    "NotRetryableError",
    "NotWaitingError",
    "OrchestratorUnavailableError",
    "OutputValidationError",
    "PayloadTooLargeError",
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
    "SessionConflictError",
    "StepExecutionError",
    "StepInfo",
    "StepRecord",
    "StepTimeoutError",
    "TimeoutError",
    "Tool",
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
    "ask_user_tool",
    "current_step",
    "executed_tool",
    "guardrail",
    "has_text",
    "max_steps",
    "max_tokens",
    "queue",
    "stop_condition",
    "tool",
    "workflow",
]
