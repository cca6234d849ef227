"""HTTP routes for cron schedules: create, list, get, update, pause, resume, delete, trigger."""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Path, Query
from fastapi.responses import Response

from polos.protocol import (
    API_PREFIX,
    CreateScheduleRequest,
    Schedule,
    ScheduleList,
    TriggerScheduleRequest,
    TriggerScheduleResponse,
    UpdateScheduleRequest,
)
from polos.storage import ScheduleRefused, decode_schedule_cursor, encode_schedule_cursor

from ._limits import check_payload  # limits
from ._routes import _ERRORS, ApiProblem, Project, Runtime, model_response

router = APIRouter(prefix=f"{API_PREFIX}/schedules", responses=_ERRORS, tags=["schedules"])

_STATUS = {
    "schedule_not_found": 404,
    "workflow_not_found": 404,
    "declared_in_code": 409,
    "event_triggered": 409,
}
_CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"description": "Declared in code, or the workflow is event-triggered"}
}

T = TypeVar("T")
ScheduleId = Annotated[str, Path(min_length=1, max_length=200, description="The schedule id.")]


def _answer(result: T | ScheduleRefused) -> T:
    if isinstance(result, ScheduleRefused):
        raise ApiProblem(_STATUS.get(result.code, 400), result.code, result.message)
    return result


@router.post(
    "",
    response_model=Schedule,
    status_code=201,
    summary="Create (or replace) the schedule of a workflow and key",
    responses={**_CONFLICT, 200: {"model": Schedule, "description": "Replaced"}},  # limits
)
async def create_schedule(
    body: CreateScheduleRequest, runtime: Runtime, project_id: Project
) -> Response:
    """One schedule per ``(workflow_id, key)``: a second create with the same pair replaces
    its cron, timezone, payload and policies (200) instead of adding one (201)."""
    check_payload(runtime.settings.limits, "schedule payload", body.payload)  # limits
    schedule, created = _answer(await runtime.store.schedules.create(project_id, body))
    runtime.schedule_loop.wake()
    return model_response(schedule, 201 if created else 200)


@router.get("", response_model=ScheduleList, summary="List schedules")
async def list_schedules(
    runtime: Runtime,
    project_id: Project,
    workflow_id: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=1000)] = None,
) -> Response:
    """Schedules ordered by workflow and key; pass ``next_cursor`` as ``cursor`` for more."""
    position = None
    if cursor:
        try:
            position = decode_schedule_cursor(cursor)
        except ValueError as exc:
            raise ApiProblem(400, "invalid_cursor", str(exc)) from None
    items, after = await runtime.store.schedules.list_schedules(
        project_id, workflow_id=workflow_id, limit=limit, cursor=position
    )
    next_cursor = encode_schedule_cursor(*after) if after is not None else None
    return model_response(ScheduleList(items=items, next_cursor=next_cursor))


@router.get("/{schedule_id}", response_model=Schedule, summary="Get one schedule")
async def get_schedule(schedule_id: ScheduleId, runtime: Runtime, project_id: Project) -> Response:
    """The schedule, with its next slot and its last run."""
    schedule = await runtime.store.schedules.get(project_id, schedule_id)
    if schedule is None:
        raise ApiProblem(404, "schedule_not_found", f"schedule {schedule_id!r} does not exist")
    return model_response(schedule)


@router.patch(
    "/{schedule_id}", response_model=Schedule, summary="Change a schedule", responses=_CONFLICT
)
async def update_schedule(
    schedule_id: ScheduleId, body: UpdateScheduleRequest, runtime: Runtime, project_id: Project
) -> Response:
    """Change its cron, timezone, payload, catch-up or overlap policy; a new cron or
    timezone moves the next run to the new expression's next slot."""
    check_payload(runtime.settings.limits, "schedule payload", body.payload)  # limits
    schedule = _answer(await runtime.store.schedules.update(project_id, schedule_id, body))
    runtime.schedule_loop.wake()
    return model_response(schedule)


@router.post("/{schedule_id}/pause", response_model=Schedule, summary="Pause a schedule")
async def pause_schedule(
    schedule_id: ScheduleId, runtime: Runtime, project_id: Project
) -> Response:
    """No slot fires while paused. Pausing a paused schedule changes nothing."""
    result = await runtime.store.schedules.set_paused(project_id, schedule_id, True)
    return model_response(_answer(result))


@router.post("/{schedule_id}/resume", response_model=Schedule, summary="Resume a schedule")
async def resume_schedule(
    schedule_id: ScheduleId, runtime: Runtime, project_id: Project
) -> Response:
    """Fire again from the next slot after now (slots that passed while paused do not run)."""
    result = _answer(await runtime.store.schedules.set_paused(project_id, schedule_id, False))
    runtime.schedule_loop.wake()
    return model_response(result)


@router.delete("/{schedule_id}", response_model=Schedule, summary="Delete a schedule")
async def delete_schedule(
    schedule_id: ScheduleId, runtime: Runtime, project_id: Project
) -> Response:
    """Delete it and return it as it was; executions it started are kept. A schedule
    declared in code comes back when a worker serving the workflow registers again."""
    return model_response(_answer(await runtime.store.schedules.delete(project_id, schedule_id)))


@router.post(
    "/{schedule_id}/trigger",
    response_model=TriggerScheduleResponse,
    status_code=201,
    summary="Start one run now",
    responses={200: {"model": TriggerScheduleResponse, "description": "Key already used"}},
)
async def trigger_schedule(
    schedule_id: ScheduleId,
    runtime: Runtime,
    project_id: Project,
    body: TriggerScheduleRequest | None = None,
) -> Response:
    """Start one execution now, with the trigger time as its slot time (paused or not).

    With an ``idempotency_key`` already used, returns the execution it started (200).
    """
    key = body.idempotency_key if body is not None else None
    result = _answer(await runtime.store.schedules.trigger(project_id, schedule_id, key))
    if result.created:
        runtime.gateway.wake()
    return model_response(result, 201 if result.created else 200)
