"""HTTP bodies for events, waits and resumes (``/api/v1/events``, ``/api/v1/waits``).

Events are JSON values published on a *topic* (a string such as ``order/new``
or ``warehouse.pickup/42``). Each topic of a project keeps an ordered, durable
log; an event's ``seq`` is its position in its topic (1, 2, 3, ...), which is
also the ``id`` of its server-sent event, so that a stream resumes after the
last ``seq`` it saw (``Last-Event-ID``).
"""

from __future__ import annotations

import enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

TOPIC_MAX_LENGTH = 300
"""Longest topic name accepted."""

TOPIC_PATTERN = r"^[^\s\x00-\x1f]+$"
"""Topics are non-empty and contain no whitespace or control characters."""


class PublishRequest(BaseModel):
    """Append one event to a topic."""

    model_config = ConfigDict(extra="forbid")

    topic: str = Field(min_length=1, max_length=TOPIC_MAX_LENGTH, pattern=TOPIC_PATTERN)
    data: Any = Field(default=None, description="The event's JSON value.")
    idempotency_key: str | None = Field(
        default=None,
        min_length=1,
        max_length=500,
        description="Publishing twice with the same key returns the first event.",
    )


class BatchPublishRequest(BaseModel):
    """Append many events at once (one transaction, request order kept per topic)."""

    model_config = ConfigDict(extra="forbid")

    events: list[PublishRequest] = Field(min_length=1, max_length=1000)


class Event(BaseModel):
    """One event of a topic's log."""

    id: str = Field(description="Unique id of the event.")
    """Unique id of the event."""
    topic: str
    """The topic it was published on."""
    seq: int = Field(description="Position in the topic's log (1-based, no gaps).")
    """Position in the topic's log (1-based, no gaps); also the id of its server-sent
    event."""
    data: Any = None
    """The event's JSON value."""
    created_at: int = Field(description="When it was published (epoch ms).")
    """When it was published (epoch ms)."""
    idempotency_key: str | None = None
    """The idempotency key it was published with, if any (publishing again with it returns
    this event)."""
    source_execution_id: str | None = Field(
        default=None,
        description="The execution that published it (ctx.step.publish_event or ctx.emit).",
    )
    """The execution that published it (``ctx.step.publish_event`` or ``ctx.emit``); None
    when published through the API (the client, the CLI)."""


class PublishResponse(Event):
    """The published (or, for a repeated idempotency key, the existing) event."""

    created: bool = Field(description="False when the idempotency key matched an earlier event.")
    triggered: list[str] = Field(
        default_factory=list,
        description="Executions this publish started (workflows with trigger_on_event).",
    )


class BatchPublishResponse(BaseModel):
    """The events of a batch publish, in request order."""

    items: list[PublishResponse]


class EventPage(BaseModel):
    """Events of one topic in ``seq`` order."""

    items: list[Event]
    next_after: int | None = Field(
        default=None, description="Pass as 'after' to read the next page (None: end of the log)."
    )


class WaitKind(enum.StrEnum):
    """What an execution is waiting for."""

    SUSPEND = "suspend"
    """A resume call (a human approval, typically)."""
    EVENT = "event"
    """An event on a topic."""
    SLEEP = "sleep"
    """A point in time."""
    CHILD = "child"
    """Child executions to finish."""
    ACQUIRE = "acquire"
    """Units of a rate limit (``ctx.step.acquire``)."""


class WaitInfo(BaseModel):
    """An execution parked at a wait step (holding no worker)."""

    execution_id: str
    """The waiting execution."""
    workflow_id: str
    """The workflow that execution runs."""
    root_id: str | None = None
    """The top-level execution of its tree (its own id for a top-level execution)."""
    step_key: str = Field(description="The wait step's key, with its occurrence suffix.")
    """The wait step's key, with its occurrence suffix (``'approval'``, ``'approval#2'``);
    pass it to resume a suspended execution."""
    kind: WaitKind
    """What it waits for: a resume, an event, a time, children or rate-limit units."""
    data: Any = Field(default=None, description="What suspend() attached for the human.")
    """For suspend waits: what ``suspend()`` attached for the human; None for other
    kinds."""
    topic: str | None = Field(default=None, description="For event waits: the topic.")
    """For event waits: the topic; None for other kinds."""
    expires_at: int | None = Field(
        default=None,
        description="Timeout (or, for sleeps, wake-up time; for rate-limit waits, when units "
        "may next be free) in epoch ms.",
    )
    """Timeout (or, for sleeps, the wake-up time; for rate-limit waits, when units may next
    be free) in epoch ms; None: it waits without a timeout."""
    pending_children: int | None = Field(
        default=None, description="For child waits: how many children have not finished."
    )
    """For child waits: how many children have not finished; None for other kinds."""
    created_at: int
    """When the execution parked at this wait (epoch ms)."""


class WaitPage(BaseModel):
    """Waiting executions, oldest wait first."""

    items: list[WaitInfo]
    next_cursor: str | None = Field(
        default=None, description="Pass as 'cursor' to get the next page."
    )


class ResumeRequest(BaseModel):
    """Resume an execution suspended at ``step_key``."""

    model_config = ConfigDict(extra="forbid")

    step_key: str = Field(
        min_length=1,
        max_length=250,
        description="The suspend step's key ('approval'); 'approval#2' names a repeat.",
    )
    data: Any = Field(default=None, description="Returned to the workflow as decision.data.")
    by: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Who decides (a user or service name); recorded with the step.",
    )
    comment: str | None = Field(
        default=None, max_length=4000, description="Why (recorded with the step)."
    )
