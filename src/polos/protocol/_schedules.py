"""Cron schedules on the wire (``/api/v1/schedules``) and the payload a scheduled run gets.

A schedule starts its workflow at every *slot* of a cron expression, evaluated in
the schedule's time zone. Schedules are per ``(workflow, key)``: one per user, say,
with ``key=user_id``. See ``docs/schedules.md``.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ._cron import validate_cron, validate_timezone

KEY_PATTERN = r"^[^\x00-\x1f\x7f]+$"
"""Schedule keys: any text without control characters."""


class CatchupPolicy(enum.StrEnum):
    """What happens to slots missed while no orchestrator was running."""

    ONCE = "once"
    """Run once, for the most recent missed slot (the default; never a burst)."""
    SKIP = "skip"
    """Run none of them; go on with the next slot."""
    ALL = "all"
    """Run each missed slot, oldest first (at most the 100 most recent)."""


class OverlapPolicy(enum.StrEnum):
    """What a slot does while the schedule's previous execution has not finished."""

    SKIP = "skip"
    """Start nothing for this slot (the default)."""
    QUEUE = "queue"
    """Start it in the schedule's own queue (limit 1): it runs when the previous one ends."""
    ALLOW = "allow"
    """Start it anyway: runs may overlap."""


class ScheduleStatus(enum.StrEnum):
    """Whether a schedule fires."""

    ACTIVE = "active"
    PAUSED = "paused"


class ScheduleSource(enum.StrEnum):
    """Who manages a schedule."""

    DECORATOR = "decorator"
    """Declared with ``@workflow(schedule=...)``; kept in sync by the workers."""
    API = "api"
    """Made through the API, the client or the CLI."""


class ScheduleSpec(BaseModel):
    """A cron expression in a time zone, with its policies (what ``@workflow(schedule=)`` takes)."""

    model_config = ConfigDict(extra="forbid")

    cron: str = Field(
        max_length=200,
        description="Five fields (minute hour day-of-month month day-of-week) or @daily, ...",
        examples=["0 9 * * 1-5"],
    )
    timezone: str = Field(default="UTC", description="IANA zone the cron is evaluated in.")
    key: str = Field(
        default="global",
        min_length=1,
        max_length=200,
        pattern=KEY_PATTERN,
        description="One schedule per (workflow, key): e.g. a user id.",
    )
    catchup: CatchupPolicy = CatchupPolicy.ONCE
    overlap: OverlapPolicy = OverlapPolicy.SKIP

    @field_validator("cron")
    @classmethod
    def _check_cron(cls, value: str) -> str:
        return validate_cron(value)

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        return validate_timezone(value)


class CreateScheduleRequest(ScheduleSpec):
    """``POST /schedules``: create the schedule of ``(workflow_id, key)``, or replace it."""

    workflow_id: str = Field(min_length=1, max_length=200)
    payload: Any = Field(default=None, description="Given to every run as SchedulePayload.data.")


class UpdateScheduleRequest(BaseModel):
    """``PATCH /schedules/{id}``: change what is given; leave out the rest."""

    model_config = ConfigDict(extra="forbid")

    cron: str | None = Field(default=None, max_length=200)
    timezone: str | None = None
    payload: Any = Field(default=None, description="Given to every run (null clears it).")
    catchup: CatchupPolicy | None = None
    overlap: OverlapPolicy | None = None

    @field_validator("cron")
    @classmethod
    def _check_cron(cls, value: str | None) -> str | None:
        return None if value is None else validate_cron(value)

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str | None) -> str | None:
        return None if value is None else validate_timezone(value)

    @model_validator(mode="after")
    def _something(self) -> UpdateScheduleRequest:
        if not self.model_fields_set:
            raise ValueError("nothing to change: give cron, timezone, payload, catchup or overlap")
        return self


class Schedule(BaseModel):
    """A schedule as the API shows it. Times are epoch ms (UTC)."""

    id: str
    """Id of the schedule, the same every time for one ``(project, workflow, key)``."""
    workflow_id: str
    """The workflow it starts."""
    key: str
    """Its key: one schedule per ``(workflow, key)`` (``'global'`` unless given)."""
    cron: str
    """The cron expression (five fields, or ``@daily``...)."""
    timezone: str
    """The IANA time zone the cron is evaluated in."""
    payload: Any = None
    """Given to every run as ``SchedulePayload.data``; None when it has none."""
    status: ScheduleStatus
    """``active`` (its slots fire) or ``paused``."""
    catchup: CatchupPolicy
    """What happens to slots missed while no orchestrator was running."""
    overlap: OverlapPolicy
    """What a slot does while the previous run has not finished."""
    source: ScheduleSource
    """Who manages it: ``decorator`` (``@workflow(schedule=...)``, kept in sync by the
    workers) or ``api``."""
    next_at: int | None = Field(default=None, description="The next slot (None while paused).")
    """The next slot (None while paused, or when the cron never fires again)."""
    last_slot_at: int | None = Field(
        default=None, description="Slot time of the last execution the schedule started."
    )
    """Slot time of the last execution the schedule started (for a trigger, the time of
    the trigger); None before the first."""
    last_execution_id: str | None = None
    """The last execution the schedule started (by a slot or a trigger); None before the
    first."""
    created_at: int
    """When the schedule was created."""
    updated_at: int
    """When the schedule last changed (edited, paused, resumed, triggered, or a slot came
    due)."""


class ScheduleList(BaseModel):
    """A page of schedules, ordered by workflow and key."""

    items: list[Schedule]
    next_cursor: str | None = Field(default=None, description="Pass as 'cursor' for more.")


class TriggerScheduleRequest(BaseModel):
    """``POST /schedules/{id}/trigger``: start one run now."""

    model_config = ConfigDict(extra="forbid")

    idempotency_key: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Triggering twice with one key starts one execution.",
    )


class TriggerScheduleResponse(BaseModel):
    """The execution a trigger started (or, for a repeated key, the one it started before)."""

    execution_id: str
    schedule_id: str
    slot_at: int = Field(description="The slot time the run was given (the trigger time).")
    created: bool


class SchedulePayload(BaseModel):
    """What a scheduled run gets as its payload (annotate the workflow's payload with it).

    The datetimes carry the UTC offset the schedule's zone had at that moment (an
    exact instant; ``dt.astimezone(ZoneInfo(payload.timezone))`` gives the zone itself).
    """

    timestamp: datetime
    """The slot this run is for, in the schedule's time zone (not the moment it started: a
    late or caught-up run still says which slot it is; a trigger-now run gets the trigger
    time)."""
    last_timestamp: datetime | None = None
    """The slot of the schedule's previous run (None for the first)."""
    timezone: str = "UTC"
    """The schedule's IANA time zone."""
    schedule_id: str
    """The schedule's id."""
    key: str = "global"
    """The schedule's key (e.g. the user it runs for)."""
    upcoming: datetime | None = None
    """The slot after this one (None if the cron never fires again; for a trigger-now run,
    the schedule's next slot, None while it is paused)."""
    data: Any = None
    """The schedule's ``payload``, if it has one."""
    manual: bool = False
    """True when started by a trigger-now call rather than by the cron."""
