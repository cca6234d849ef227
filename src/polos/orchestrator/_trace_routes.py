"""HTTP route of traces: ``GET /api/v1/executions/{id}/trace``."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from polos.protocol import API_PREFIX, ErrorBody, TraceView
from polos.storage import trace_of

from ._routes import ApiProblem, Project, Runtime, model_response
from ._traces import derive_trace

router = APIRouter(
    prefix=API_PREFIX,
    responses={404: {"model": ErrorBody, "description": "Unknown execution or project"}},
)


@router.get(
    "/executions/{execution_id}/trace",
    response_model=TraceView,
    summary="The trace of an execution's root: every execution and step as spans",
)
async def get_trace(execution_id: str, runtime: Runtime, project_id: Project) -> Response:
    """Spans of the whole tree ``execution_id`` belongs to (from its root down).

    Derived from the step log on each call: executions, recorded steps, and the
    waits executions are parked at (open spans, ``end_ms`` null).
    """
    rows = await trace_of(runtime.store, project_id, execution_id)
    if rows is None:
        raise ApiProblem(404, "execution_not_found", f"execution {execution_id!r} does not exist")
    view = derive_trace(rows.executions, rows.steps, rows.waits, truncated=rows.truncated)
    return model_response(view)
