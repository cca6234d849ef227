"""What a running workflow sees: :class:`WorkflowContext` and the current step's info."""

from __future__ import annotations

import contextvars
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from polos.errors import ConfigurationError

if TYPE_CHECKING:
    from ._wait_steps import Step


@dataclass(frozen=True, slots=True)
class StepInfo:
    """Facts about the step whose function is running now.

    Attributes:
        execution_id: the execution the step belongs to.
        step_key: the step's key, with its occurrence suffix (``charge``, ``charge#2``).
        attempt: 1 for the first try of this step function, 2 for its first retry...
        idempotency_key: ``"<execution_id>:<step_key>"``, stable across retries, replays
            and crashes: pass it to external APIs (e.g. Stripe's ``Idempotency-Key``) so
            that a step that re-runs after a crash does not repeat its side effect.
    """

    execution_id: str
    step_key: str
    attempt: int

    @property
    def idempotency_key(self) -> str:
        """Stable key for external APIs: ``"<execution_id>:<step_key>"``."""
        return f"{self.execution_id}:{self.step_key}"


_current_step: contextvars.ContextVar[StepInfo | None] = contextvars.ContextVar(
    "polos_current_step", default=None
)
_current_context: contextvars.ContextVar[WorkflowContext | None] = contextvars.ContextVar(
    "polos_current_context", default=None
)


def current_step() -> StepInfo:
    """Info about the step function running now (call it from inside the step function).

    Raises:
        ConfigurationError: when called outside a step function.
    """
    info = _current_step.get()
    if info is None:
        raise ConfigurationError("polos.current_step() must be called from inside a step function")
    return info


def current_context() -> WorkflowContext | None:
    """The :class:`WorkflowContext` of the workflow running in this task, if any."""
    return _current_context.get()


class WorkflowContext:
    """Passed as the first argument of every workflow.

    Attributes:
        execution_id: id of this execution.
        workflow_id: id of the workflow.
        attempt: how many times the execution was started (1 on the first run; a crash
            or a retry starts another attempt, which replays the recorded steps).
        parent_execution_id: the parent's id for a child workflow.
        root_execution_id: the id of the top of the execution tree.
        created_at: when the execution was created (epoch ms).
        code_fingerprint: the fingerprint of the code that first ran this execution.
        step: the durable step API (``await ctx.step.run("key", fn, ...)``).
    """

    def __init__(
        self,
        *,
        execution_id: str,
        workflow_id: str,
        attempt: int,
        step: Step,
        state: Any = None,
        parent_execution_id: str | None = None,
        root_execution_id: str | None = None,
        created_at: int = 0,
        code_fingerprint: str | None = None,
    ) -> None:
        self.execution_id = execution_id
        self.workflow_id = workflow_id
        self.attempt = attempt
        self.step = step
        self._state = state
        self.parent_execution_id = parent_execution_id
        self.root_execution_id = root_execution_id or execution_id
        self.created_at = created_at
        self.code_fingerprint = code_fingerprint

    @property
    def state(self) -> Any:
        """The workflow's ``state_schema`` instance, persisted with each step and restored on replay."""
        if self._state is None:
            raise ConfigurationError(
                f"workflow {self.workflow_id!r} has no state: declare @workflow(state_schema=YourModel)"
            )
        return self._state

    @property
    def has_state(self) -> bool:
        """Whether the workflow declared a ``state_schema``."""
        return self._state is not None

    def __repr__(self) -> str:
        return f"WorkflowContext(workflow_id={self.workflow_id!r}, execution_id={self.execution_id!r}, attempt={self.attempt})"
