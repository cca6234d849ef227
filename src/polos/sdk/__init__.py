"""Code that runs inside user workflows: decorators, the context, the step API, replay."""

from ._context import StepInfo, WorkflowContext, current_context, current_step
from ._execute import AttemptInput, AttemptOutcome, error_info, run_attempt
from ._fingerprint import fingerprint
from ._retry import (
    DEFAULT_MAX_RECOVERY_ATTEMPTS,
    DEFAULT_STEP_RETRY,
    DEFAULT_WORKFLOW_RETRY,
    RetryPolicy,
    qualified_name,
)
from ._runtime import LeaseLost, StepRecorder
from ._serialize import from_json_value, to_json_value, type_name
from ._steps import StateBox, Step
from ._workflow import InvokingClient, Queue, Workflow, queue, workflow

__all__ = [
    "DEFAULT_MAX_RECOVERY_ATTEMPTS",
    "DEFAULT_STEP_RETRY",
    "DEFAULT_WORKFLOW_RETRY",
    "AttemptInput",
    "AttemptOutcome",
    "InvokingClient",
    "LeaseLost",
    "Queue",
    "RetryPolicy",
    "StateBox",
    "Step",
    "StepInfo",
    "StepRecorder",
    "Workflow",
    "WorkflowContext",
    "current_context",
    "current_step",
    "error_info",
    "fingerprint",
    "from_json_value",
    "qualified_name",
    "queue",
    "run_attempt",
    "to_json_value",
    "type_name",
    "workflow",
]
