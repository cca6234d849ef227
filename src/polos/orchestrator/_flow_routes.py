"""HTTP routes for flow control: queue state and rate limits."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from fastapi.responses import Response

from polos.protocol import (
    API_PREFIX,
    NAME_PATTERN,
    QueueInfo,
    QueueList,
    RateLimitInfo,
    RateLimitRequest,
    RateLimitSpec,
)

from ._routes import _ERRORS, ApiProblem, Project, Runtime, model_response

router = APIRouter(prefix=API_PREFIX, responses=_ERRORS)

Name = Annotated[str, Path(min_length=1, max_length=200, pattern=NAME_PATTERN)]


@router.get(
    "/queues",
    response_model=QueueList,
    summary="Queues and rate limits",
    description="Every queue with its limits, running / runnable / delayed / waiting counts "
    "and the busiest concurrency keys; every rate limit with the units used in its window.",
)
async def list_queues(runtime: Runtime, project_id: Project) -> Response:
    return model_response(await runtime.store.list_queues(project_id))


@router.get("/queues/{name}", response_model=QueueInfo, summary="One queue")
async def get_queue(name: Name, runtime: Runtime, project_id: Project) -> Response:
    queues = await runtime.store.list_queues(project_id)
    for item in queues.items:
        if item.name == name:
            return model_response(item)
    raise ApiProblem(404, "queue_not_found", f"no queue {name!r} in project {project_id!r}")


@router.put(
    "/rate-limits/{name}",
    response_model=RateLimitInfo,
    summary="Define or change a rate limit",
    description="The limit applies to every later grant; units already granted stay counted "
    "until they leave the window.",
)
async def put_rate_limit(
    name: Name, body: RateLimitRequest, runtime: Runtime, project_id: Project
) -> Response:
    period_ms = round(body.period_seconds * 1000)
    if period_ms < 1:
        raise ApiProblem(422, "invalid_value", "period_seconds must be at least 0.001")
    spec = RateLimitSpec(name=name, limit=body.limit, period_ms=period_ms)
    await runtime.store.set_rate_limit(project_id, spec)
    queues = await runtime.store.list_queues(project_id)
    info = next(r for r in queues.rate_limits if r.name == name)
    runtime.gateway.wake()  # a bigger limit may let queued executions start
    return model_response(info)
