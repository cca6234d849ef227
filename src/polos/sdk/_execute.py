"""Run one attempt of an execution: build the context, call the workflow, describe the outcome."""

from __future__ import annotations

import asyncio
import traceback
from dataclasses import dataclass
from typing import Any

from polos.errors import NonDeterminismError, PayloadValidationError, SerializationError
from polos.protocol import ErrorInfo, StepRecord

from ._context import WorkflowContext, _current_context
from ._retry import qualified_name
from ._runtime import CancelSignal, StepRecorder, WaitPending
from ._serialize import to_json_value
from ._steps import StateBox
from ._wait_steps import Step
from ._workflow import Workflow

# Errors that would happen again identically on a retry: fail at once.
_DETERMINISTIC = (PayloadValidationError, NonDeterminismError, SerializationError)


@dataclass(frozen=True, slots=True)
class AttemptInput:
    """Everything the orchestrator sent to run one attempt."""

    execution_id: str
    attempt: int
    payload: Any
    history: list[StepRecord]
    state: Any = None
    has_state: bool = False
    parent_id: str | None = None
    root_id: str | None = None
    created_at: int = 0
    code_fingerprint: str | None = None
    trigger: Any = None


@dataclass(frozen=True, slots=True)
class AttemptOutcome:
    """How an attempt ended (when it did not lose its lease or get cancelled).

    ``parked``: the execution waits at a step; the orchestrator already knows and
    nothing more is to be reported for this attempt.
    """

    completed: bool
    parked: bool = False
    result: Any = None
    error: ErrorInfo | None = None
    retryable: bool = False
    has_state: bool = False
    state: Any = None


def error_info(exc: BaseException) -> ErrorInfo:
    """Describe an exception for the wire."""
    return ErrorInfo(
        type=qualified_name(type(exc)),
        message=str(exc),
        traceback="".join(traceback.format_exception(exc)),
    )


async def run_attempt(
    workflow: Workflow[Any],
    given: AttemptInput,
    recorder: StepRecorder,
    *,
    cancel: CancelSignal | None = None,
) -> AttemptOutcome:
    """Run (or replay) ``workflow`` for one attempt.

    Raises only :class:`~polos.sdk.LeaseLost` (the attempt was fenced off) and
    cancellation (:class:`~polos.ExecutionCancelled` once ``cancel`` was set, a
    plain ``asyncio.CancelledError`` otherwise); every other ending is an
    :class:`AttemptOutcome`.
    """
    try:
        state_model = workflow.new_state(given.state, given.has_state)
    except Exception as exc:  # a schema without defaults, or a snapshot it rejects
        return AttemptOutcome(completed=False, error=error_info(exc), retryable=False)
    box = StateBox(state_model, state_model.model_dump_json() if state_model is not None else None)
    step = Step(
        execution_id=given.execution_id,
        history=given.history,
        recorder=recorder,
        state=box,
        code_fingerprint=workflow.fingerprint,
        recorded_fingerprint=given.code_fingerprint,
        cancel=cancel,
    )
    ctx = WorkflowContext(
        execution_id=given.execution_id,
        workflow_id=workflow.id,
        attempt=given.attempt,
        step=step,
        state=state_model,
        parent_execution_id=given.parent_id,
        root_execution_id=given.root_id,
        created_at=given.created_at,
        code_fingerprint=given.code_fingerprint or workflow.fingerprint,
    )
    token = _current_context.set(ctx)
    try:
        args: tuple[Any, ...] = (
            (ctx, workflow.parse_payload(given.payload, given.trigger))
            if workflow.takes_payload
            else (ctx,)
        )
        if workflow.is_async:
            result = await workflow.fn(*args)
        else:
            step._loop = asyncio.get_running_loop()
            result = await asyncio.to_thread(workflow.fn, *args)
        output = to_json_value(result, f"workflow {workflow.id!r}")
        await step.flush()
        has_state, state = box.changed_snapshot()
        if step.parked:  # user code swallowed WaitPending: the attempt still ended at the wait
            return AttemptOutcome(completed=False, parked=True)
        return AttemptOutcome(completed=True, result=output, has_state=has_state, state=state)
    except WaitPending:
        return AttemptOutcome(completed=False, parked=True)
    except Exception as exc:
        if step.parked:
            return AttemptOutcome(completed=False, parked=True)
        await step.flush()
        has_state, state = box.changed_snapshot()
        retryable = not isinstance(exc, _DETERMINISTIC) and workflow.retry.is_retryable(exc)
        return AttemptOutcome(
            completed=False,
            error=error_info(exc),
            retryable=retryable,
            has_state=has_state,
            state=state,
        )
    finally:
        _current_context.reset(token)
