"""Code that runs inside user workflows: decorators, the context, the step API, replay."""

from ._context import StepInfo, WorkflowContext, current_context, current_step
from ._execute import AttemptInput, AttemptOutcome, error_info, run_attempt
from ._fingerprint import fingerprint
from ._flow import Queue, RateLimit, RateLimitGrant, queue, queue_option
from ._retry import (
    DEFAULT_MAX_RECOVERY_ATTEMPTS,
    DEFAULT_STEP_RETRY,
    DEFAULT_WORKFLOW_RETRY,
    RetryPolicy,
    qualified_name,
)
from ._runtime import CancelSignal, LeaseLost, ParkRequest, StepRecorder, WaitPending
from ._serialize import from_json_value, to_json_value, type_name
from ._steps import BaseStep, StateBox
from ._wait_steps import Step
from ._wait_types import (
    BatchEventPayload,
    BatchStepResult,
    BatchWorkflowInput,
    ChildHandle,
    EventPayload,
    ResumeData,
    child_execution_id,
)
from ._workflow import InvokingClient, Workflow, workflow

__all__ = [
    "DEFAULT_MAX_RECOVERY_ATTEMPTS",
    "DEFAULT_STEP_RETRY",
    "DEFAULT_WORKFLOW_RETRY",
    "AttemptInput",
    "AttemptOutcome",
    "BaseStep",
    "BatchEventPayload",
    "BatchStepResult",
    "BatchWorkflowInput",
    "CancelSignal",
    "ChildHandle",
    "EventPayload",
    "InvokingClient",
    "LeaseLost",
    "ParkRequest",
    "Queue",
    "RateLimit",
    "RateLimitGrant",
    "ResumeData",
    "RetryPolicy",
    "StateBox",
    "Step",
    "StepInfo",
    "StepRecorder",
    "WaitPending",
    "Workflow",
    "WorkflowContext",
    "child_execution_id",
    "current_context",
    "current_step",
    "error_info",
    "fingerprint",
    "from_json_value",
    "qualified_name",
    "queue",
    "queue_option",
    "run_attempt",
    "to_json_value",
    "type_name",
    "workflow",
]
