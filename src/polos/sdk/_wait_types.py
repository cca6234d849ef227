"""Values the waiting steps return: resume data, events, child handles and results."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from polos.protocol import ErrorInfo

if TYPE_CHECKING:
    from ._workflow import Workflow

_CHILD_NAMESPACE = uuid.UUID("5d1c3f7e-6a55-4f37-9a0e-0b6f1c1a7e21")


def child_execution_id(parent_id: str, step_key: str, index: int) -> str:
    """The id of a child execution: derived from its parent, step and position.

    A replay, or a message sent twice, therefore names the same child and can
    never start a second one.
    """
    return str(uuid.uuid5(_CHILD_NAMESPACE, f"{parent_id}/{step_key}/{index}"))


class ResumeData(BaseModel):
    """What ``ctx.step.suspend`` returns: the data the resume call delivered.

    Attributes:
        data: the ``data`` given to ``client.resume`` (or the CLI / HTTP API).
        resumed_at: when it was resumed (epoch ms).
        resumed_by: who resumed it, as the resume call said (``None``: not said).
        comment: the resume call's comment, if any.
    """

    data: Any = None
    resumed_at: int = 0
    resumed_by: str | None = None
    comment: str | None = None


class EventPayload(BaseModel):
    """One event: what ``wait_for_event`` returns and what a triggered workflow may take.

    Annotate a triggered workflow's payload with ``EventPayload`` to get the topic
    and seq too; annotate it with your own model to get just the validated data.
    """

    id: str = ""
    topic: str
    seq: int
    data: Any = None
    created_at: int = 0


class BatchEventPayload(BaseModel):
    """The events a batched trigger (``batch_size`` > 1) starts one execution with."""

    events: list[EventPayload] = Field(default_factory=list)


class ChildHandle(BaseModel):
    """A child execution started by ``ctx.step.invoke`` (recorded, so replays get the same).

    Attributes:
        id: the child's execution id (give it to ``PolosClient.handle`` to follow it).
        workflow_id: the child's workflow.
        parent_execution_id: the execution that started it.
        step_key: the parent's step that started it.
        index: its position among the children of that step.
    """

    id: str
    workflow_id: str
    parent_execution_id: str
    step_key: str
    index: int = 0


@dataclass(frozen=True, slots=True)
class BatchWorkflowInput:
    """One child of ``batch_invoke`` / ``batch_invoke_and_wait``.

    Attributes:
        id: the workflow to start (a ``@workflow`` object or its id).
        payload: its payload.
        initial_state: its initial ``ctx.state``.
        queue: run it on this queue.
        concurrency_key: its concurrency key.
        priority: higher runs first.
        run_timeout: its run timeout (seconds or a timedelta), instead of its workflow's.
    """

    id: Workflow[Any] | str
    payload: Any = None
    initial_state: Any = None
    queue: str | None = None
    concurrency_key: str | None = None
    priority: int = 0
    run_timeout: float | timedelta | None = None


class BatchStepResult(BaseModel):
    """The outcome of one child of ``batch_invoke_and_wait`` (results keep input order).

    Attributes:
        workflow_id: the child's workflow.
        execution_id: the child execution.
        success: whether it completed.
        result: its result (typed when the input named a ``@workflow`` object).
        error: why it failed or was cancelled.
        status: ``completed``, ``failed`` or ``cancelled``.
    """

    workflow_id: str
    execution_id: str
    success: bool
    result: Any = None
    error: ErrorInfo | None = None
    status: str = "completed"
