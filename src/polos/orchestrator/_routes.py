"""HTTP routes of the public API (``/api/v1``) and the worker channel (the UI: ``_ui``)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from polos.protocol import (
    API_PREFIX,
    DEFAULT_PROJECT_ID,
    PROJECT_HEADER,
    BatchInvokeRequest,
    BatchInvokeResponse,
    CancelRequest,
    ErrorBody,
    Execution,
    ExecutionList,
    ExecutionPage,
    ExecutionStatus,
    InvokeRequest,
    InvokeResponse,
    RetryRequest,
    StepList,
    WaitRequest,
    WorkerList,
    WorkflowList,
)
from polos.storage import NO_WORKFLOW, Cancelled, CancelOp, Created, CreateExecution, dumps

from ._auth import LOCAL_CALLER, Caller, bearer_token, redact_step, redact_steps_enabled
from ._gateway import ConnectionClosed
from ._limits import MAX_DB_INT, check_batch_invoke, check_invoke  # limits
from ._runtime import OrchestratorRuntime
from ._session import BAD_CREDENTIALS, NO_CREDENTIALS, authenticate


class ApiProblem(Exception):
    """An error answer: HTTP status, stable code and a message saying what is wrong."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def model_response(model: BaseModel, status: int = 200) -> Response:
    """Serialise a model once, in pydantic's JSON encoder.

    Returning a ``Response`` skips FastAPI's second validation of the return
    value against ``response_model`` (which still documents the route).
    """
    return Response(model.model_dump_json(), status_code=status, media_type="application/json")


def problem_response(status: int, code: str, message: str) -> JSONResponse:
    """A JSON error body in the API's one error shape."""
    return JSONResponse(ErrorBody(code=code, message=message).model_dump(), status_code=status)


async def _runtime(request: Request) -> OrchestratorRuntime:
    # async on purpose: FastAPI runs plain-def dependencies in a thread pool, one hop per request.
    runtime: OrchestratorRuntime = request.app.state.runtime
    return runtime


Runtime = Annotated[OrchestratorRuntime, Depends(_runtime)]


async def _caller(request: Request, runtime: Runtime) -> Caller:
    return await authenticate(request, runtime)


CallerDep = Annotated[Caller, Depends(_caller)]


async def _project(
    runtime: Runtime,
    caller: CallerDep,
    x_polos_project: Annotated[
        str | None,
        Header(alias=PROJECT_HEADER, description="Project id (default project when absent)."),
    ] = None,
) -> str:
    if caller.project_id is not None:
        # A project key touches its own project only; naming another one finds nothing
        # (404, as for a project that does not exist: ids do not leak).
        if x_polos_project and x_polos_project != caller.project_id:
            raise ApiProblem(
                404, "project_not_found", f"project {x_polos_project!r} does not exist"
            )
        return caller.project_id
    project_id = x_polos_project or DEFAULT_PROJECT_ID
    if not await runtime.project_exists(project_id):
        raise ApiProblem(404, "project_not_found", f"project {project_id!r} does not exist")
    return project_id


Project = Annotated[str, Depends(_project)]

_ERRORS: dict[int | str, dict[str, object]] = {
    400: {"model": ErrorBody, "description": "Malformed request"},
    404: {"model": ErrorBody, "description": "Unknown id"},
    413: {"model": ErrorBody, "description": "Body too large"},
    422: {"model": ErrorBody, "description": "Invalid request body or parameters"},
}

router = APIRouter(prefix=API_PREFIX, responses=_ERRORS)


def _encode_cursor(cursor: tuple[int, str] | None) -> str | None:
    if cursor is None:
        return None
    return base64.urlsafe_b64encode(f"{cursor[0]}:{cursor[1]}".encode()).decode().rstrip("=")


def _decode_cursor(raw: str | None) -> tuple[int, str] | None:
    if not raw:
        return None
    try:
        text = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
        created, execution_id = text.split(":", 1)
        return int(created), execution_id
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise ApiProblem(400, "invalid_cursor", "cursor is not one this API returned") from exc


def _create_op(project_id: str, workflow_id: str, body: InvokeRequest) -> CreateExecution:
    return CreateExecution(
        project_id=project_id,
        workflow_id=workflow_id,
        payload_json=dumps(body.payload),
        idempotency_key=body.idempotency_key,
        queue=body.queue,
        concurrency_key=body.concurrency_key,
        priority=body.priority,
        state_json=dumps(body.initial_state) if body.initial_state is not None else None,
        run_timeout_ms=(
            max(1, round(body.run_timeout_seconds * 1000))
            if body.run_timeout_seconds is not None
            else None
        ),
        timeout_counts_waits=body.timeout_counts_waits,
    )


@router.post(
    "/workflows/{workflow_id}/executions",
    response_model=InvokeResponse,
    status_code=201,
    summary="Start an execution of a workflow",
    responses={200: {"model": InvokeResponse, "description": "Idempotency key already used"}},
)
async def invoke(
    workflow_id: str, body: InvokeRequest, runtime: Runtime, project_id: Project
) -> Response:
    """Start an execution. With an ``idempotency_key`` already used, returns that execution (200)."""
    check_invoke(runtime.settings.limits, body)  # limits: 413 over POLOS_MAX_PAYLOAD_BYTES
    result = await runtime.batcher.submit(_create_op(project_id, workflow_id, body))
    if result == NO_WORKFLOW:
        raise ApiProblem(
            404,
            "workflow_not_found",
            f"workflow {workflow_id!r} is not registered in project {project_id!r}: "
            "start a worker that serves it first",
        )
    assert isinstance(result, Created)
    if result.created:
        runtime.gateway.wake()
    response = InvokeResponse(**result.execution.model_dump(), created=result.created)
    return model_response(response, 201 if result.created else 200)


@router.get("/executions", response_model=ExecutionPage, summary="List executions, newest first")
async def list_executions(
    runtime: Runtime,
    project_id: Project,
    status: Annotated[
        list[ExecutionStatus] | None, Query(description="Filter by status (repeatable).")
    ] = None,
    workflow_id: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    created_after: Annotated[
        int | None, Query(ge=0, le=MAX_DB_INT, description="Created at or after (epoch ms).")
    ] = None,
    created_before: Annotated[
        int | None, Query(ge=0, le=MAX_DB_INT, description="Created before (epoch ms).")
    ] = None,
    q: Annotated[
        str | None, Query(max_length=200, description="An execution id or the start of one.")
    ] = None,
    parent_id: Annotated[
        str | None, Query(max_length=200, description="Children of this execution.")
    ] = None,
    root_id: Annotated[
        str | None, Query(max_length=200, description="Every execution of this root's tree.")
    ] = None,
    top_level: Annotated[bool, Query(description="Only executions without a parent.")] = False,
) -> Response:
    """A page of executions; pass ``next_cursor`` back as ``cursor`` for the next one."""
    if created_after is not None and created_before is not None and created_after >= created_before:
        raise ApiProblem(422, "invalid_value", "created_after must be before created_before")
    items, next_cursor = await runtime.store.list_executions(
        project_id,
        statuses=[s.value for s in status or []],
        workflow_id=workflow_id,
        limit=limit,
        cursor=_decode_cursor(cursor),
        created_after=created_after,
        created_before=created_before,
        id_prefix=(q or "").strip() or None,
        parent_id=parent_id,
        root_id=root_id,
        top_level=top_level,
    )
    return model_response(ExecutionPage(items=items, next_cursor=_encode_cursor(next_cursor)))


async def _get(runtime: OrchestratorRuntime, project_id: str, execution_id: str) -> Execution:
    execution = await runtime.store.get_execution(project_id, execution_id)
    if execution is None:
        raise ApiProblem(404, "execution_not_found", f"execution {execution_id!r} does not exist")
    return execution


@router.get("/executions/{execution_id}", response_model=Execution, summary="Get one execution")
async def get_execution(execution_id: str, runtime: Runtime, project_id: Project) -> Response:
    """The execution's status, payload, result or error, and attempt history."""
    return model_response(await _get(runtime, project_id, execution_id))


@router.get(
    "/executions/{execution_id}/result",
    response_model=Execution,
    summary="Wait for an execution to finish (long poll)",
)
async def wait_execution(
    execution_id: str,
    runtime: Runtime,
    project_id: Project,
    timeout: Annotated[float, Query(ge=0, le=60, description="Seconds to wait at most.")] = 30.0,
) -> Response:
    """Returns as soon as the execution is finished, or after ``timeout`` with its current state."""
    futures = runtime.waiters.register([execution_id])
    try:
        execution = await _get(runtime, project_id, execution_id)
        if execution.status.is_terminal or timeout == 0:
            return model_response(execution)
        await runtime.waiters.wait(futures, timeout)
    finally:
        runtime.waiters.unregister([execution_id], futures)
    return model_response(await _get(runtime, project_id, execution_id))


@router.post(
    "/executions/wait",
    response_model=ExecutionList,
    summary="Wait for many executions to finish (long poll)",
)
async def wait_executions(body: WaitRequest, runtime: Runtime, project_id: Project) -> Response:
    """Returns when every listed execution has finished, or after ``timeout``, in request order."""
    ids = list(dict.fromkeys(body.ids))
    futures = runtime.waiters.register(ids)
    try:
        found = await runtime.store.get_executions(project_id, ids)
        missing = [i for i in ids if i not in found]
        if missing:
            raise ApiProblem(
                404, "execution_not_found", f"executions do not exist: {', '.join(missing[:10])}"
            )
        pending = [f for i, f in zip(ids, futures, strict=True) if not found[i].status.is_terminal]
        if pending:
            # Only executions still running can resolve a future now: the finished ones'
            # futures were registered before the read and will never be resolved.
            await runtime.waiters.wait(pending, body.timeout)
            # retention: one pruned meanwhile keeps the (finished) state read above
            found = {**found, **await runtime.store.get_executions(project_id, ids)}
    finally:
        runtime.waiters.unregister(ids, futures)
    return model_response(ExecutionList(items=[found[i] for i in body.ids]))


@router.post(
    "/executions/batch",
    response_model=BatchInvokeResponse,
    status_code=201,
    summary="Start many executions at once",
)
async def invoke_batch(body: BatchInvokeRequest, runtime: Runtime, project_id: Project) -> Response:
    """Start up to 1,000 executions in one request; they are created in one transaction."""
    check_batch_invoke(runtime.settings.limits, body)  # limits
    registered = {w.id for w in await runtime.store.list_workflows(project_id)}
    unknown = sorted({i.workflow_id for i in body.items} - registered)
    if unknown:
        raise ApiProblem(
            404,
            "workflow_not_found",
            f"workflows not registered in project {project_id!r}: {', '.join(unknown[:10])}",
        )
    results = await asyncio.gather(
        *(
            runtime.batcher.submit(_create_op(project_id, item.workflow_id, item))
            for item in body.items
        )
    )
    items = []
    for item, result in zip(body.items, results, strict=True):
        if not isinstance(result, Created):  # unregistered meanwhile
            raise ApiProblem(
                404, "workflow_not_found", f"workflow {item.workflow_id!r} is not registered"
            )
        items.append(InvokeResponse(**result.execution.model_dump(), created=result.created))
    runtime.gateway.wake()
    return model_response(BatchInvokeResponse(items=items), 201)


@router.get(
    "/executions/{execution_id}/steps", response_model=StepList, summary="An execution's step log"
)
async def list_steps(execution_id: str, runtime: Runtime, project_id: Project) -> Response:
    """Every recorded step, in order, for people and tools to read: secret-named fields and
    credential-looking values in outputs and errors are shown as ``[REDACTED]`` (the
    recorded log, which replay reads, is unchanged; ``POLOS_REDACT_STEPS=off`` to show all).
    """
    await _get(runtime, project_id, execution_id)
    steps = await runtime.store.list_steps(execution_id)
    if redact_steps_enabled():
        steps = [redact_step(s) for s in steps]
    return model_response(StepList(items=steps))


@router.post(
    "/executions/{execution_id}/cancel", response_model=Execution, summary="Cancel an execution"
)
async def cancel_execution(
    execution_id: str,
    runtime: Runtime,
    project_id: Project,
    body: CancelRequest | None = None,
) -> Execution:
    """Cancel an unfinished execution, its unfinished descendants and their waits.

    A running one is stopped on its worker at once. ``cancelled_by`` records who
    (``by``, default ``api``) and why (``reason``); ``completed_at`` says when.
    Cancelling a finished execution changes nothing (its current state is returned).
    """
    who = (body.by if body is not None and body.by else None) or "api"
    if body is not None and body.reason:
        who = f"{who}: {body.reason}"
    result = await runtime.batcher.submit(CancelOp(project_id, execution_id, who))
    assert isinstance(result, Cancelled)
    if result.execution is None:
        raise ApiProblem(404, "execution_not_found", f"execution {execution_id!r} does not exist")
    if result.changed:
        await runtime.stop_running(
            [
                (result.worker_id, execution_id, f"cancelled by {who}"),
                *(
                    (worker_id, child_id, f"ancestor {execution_id} cancelled by {who}")
                    for child_id, worker_id in result.descendants
                ),
            ]
        )
    return result.execution


@router.post(
    "/executions/{execution_id}/retry",
    response_model=Execution,
    summary="Run a failed or cancelled execution again",
    responses={409: {"description": "The execution is not failed or cancelled, or is a child"}},
)
async def retry_execution(
    execution_id: str,
    runtime: Runtime,
    project_id: Project,
    body: RetryRequest | None = None,
) -> Response:
    """Queue a failed or cancelled top-level execution again, from where it stopped.

    Completed steps are not run again (they replay from the step log); the step that
    failed the run is forgotten and runs again; retries, crash budget and run timeout
    start afresh. The attempt history records who retried it and how it had ended.
    """
    who = (body.by if body is not None and body.by else None) or "api"
    retried = await runtime.store.retry_execution(project_id, execution_id, who)
    if retried.execution is None:
        raise ApiProblem(404, "execution_not_found", f"execution {execution_id!r} does not exist")
    if retried.refused is not None:
        raise ApiProblem(409, "not_retryable", retried.refused)
    runtime.gateway.wake()
    return model_response(retried.execution)


@router.get("/workflows", response_model=WorkflowList, summary="Registered workflows")
async def list_workflows(runtime: Runtime, project_id: Project) -> WorkflowList:
    """Every workflow a worker of this project registered."""
    return WorkflowList(items=await runtime.store.list_workflows(project_id))


@router.get("/workers", response_model=WorkerList, summary="Known workers")
async def list_workers(runtime: Runtime, project_id: Project) -> WorkerList:
    """Workers of this project, connected or gone."""
    return WorkerList(items=await runtime.store.list_workers(project_id))


@router.websocket("/workers/connect")
async def worker_channel(websocket: WebSocket) -> None:
    """The worker channel (see :mod:`polos.protocol._channel`)."""
    runtime: OrchestratorRuntime = websocket.app.state.runtime
    await websocket.accept()
    caller, refusal = await _worker_caller(websocket, runtime)
    named = websocket.headers.get(PROJECT_HEADER)
    if (
        caller is not None
        and caller.project_id is not None
        and named not in (None, caller.project_id)
    ):
        refusal = f"project {named!r} does not exist"
    if caller is None or refusal is not None:
        # Read the worker's hello first: a close that races its send would reach the worker
        # as "connection lost" (and it would retry forever) instead of this fatal answer.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(websocket.receive_text(), 5.0)
        await websocket.send_text(
            '{"type":"goodbye","fatal":true,"reason":' + dumps(refusal or "unauthorized") + "}"
        )
        await websocket.close(1008)
        return
    project_id = caller.project_id or named or DEFAULT_PROJECT_ID
    if not await runtime.project_exists(project_id):
        await websocket.send_text(
            '{"type":"goodbye","fatal":true,"reason":'
            + dumps(f"project {project_id!r} does not exist")
            + "}"
        )
        await websocket.close(1008)
        return

    async def receive() -> str:
        try:
            return await websocket.receive_text()
        except (WebSocketDisconnect, RuntimeError) as exc:
            raise ConnectionClosed() from exc

    await runtime.gateway.serve(websocket, receive, project_id, key_id=caller.key_id)


async def _worker_caller(
    websocket: WebSocket, runtime: OrchestratorRuntime
) -> tuple[Caller | None, str | None]:
    """The worker's caller from its ``Authorization`` header, or why it is refused."""
    if runtime.auth.local:
        return LOCAL_CALLER, None
    token = bearer_token(websocket.headers.get("authorization"))
    if token is None:
        return None, NO_CREDENTIALS
    caller = await runtime.auth.from_token(token)
    return (caller, None) if caller is not None else (None, BAD_CREDENTIALS)
