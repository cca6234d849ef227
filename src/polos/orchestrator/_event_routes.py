"""HTTP routes for events (publish, read, stream), waits and resumes."""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import Response, StreamingResponse

from polos.protocol import (
    API_PREFIX,
    TOPIC_MAX_LENGTH,
    TOPIC_PATTERN,
    BatchPublishRequest,
    BatchPublishResponse,
    Event,
    EventPage,
    Execution,
    PublishRequest,
    PublishResponse,
    ResumeRequest,
    WaitKind,
    WaitPage,
)
from polos.storage import Published, PublishOp, Resumed, ResumeOp, dumps, loads

from ._limits import MAX_DB_INT, check_events, check_payload  # limits
from ._routes import _ERRORS, ApiProblem, Project, Runtime, model_response
from ._runtime import OrchestratorRuntime

router = APIRouter(prefix=API_PREFIX, responses=_ERRORS)

KEEPALIVE_S = 15.0
"""Seconds between keep-alive comments on an idle event stream."""

STREAM_PAGE = 500
"""Events read per query while a stream catches up."""

Topic = Annotated[
    str,
    Query(
        min_length=1,
        max_length=TOPIC_MAX_LENGTH,
        pattern=TOPIC_PATTERN,
        description="The topic, e.g. 'order/new'.",
    ),
]


def _published(runtime: OrchestratorRuntime, project_id: str, result: Published) -> PublishResponse:
    if result.created:
        runtime.hub.notify(project_id, result.event.topic)
        runtime.timers.wake()  # a trigger batch may have started its timeout
    if result.triggered:
        runtime.gateway.wake()
    return PublishResponse(
        **result.event.model_dump(), created=result.created, triggered=result.triggered
    )


def _publish_op(project_id: str, body: PublishRequest) -> PublishOp:
    return PublishOp(
        project_id=project_id,
        topic=body.topic,
        data_json=dumps(body.data),
        idempotency_key=body.idempotency_key,
    )


@router.post(
    "/events",
    response_model=PublishResponse,
    status_code=201,
    summary="Publish an event on a topic",
    responses={200: {"model": PublishResponse, "description": "Idempotency key already used"}},
)
async def publish_event(body: PublishRequest, runtime: Runtime, project_id: Project) -> Response:
    """Append an event to its topic's log; start triggered workflows; end matching waits.

    With an ``idempotency_key`` already used, returns the first event (200, ``created`` false).
    """
    check_events(runtime.settings.limits, [body], batch=False)  # limits: POLOS_MAX_EVENT_BYTES
    result = await runtime.batcher.submit(_publish_op(project_id, body))
    assert isinstance(result, Published)
    response = _published(runtime, project_id, result)
    return model_response(response, 201 if result.created else 200)


@router.post(
    "/events/batch",
    response_model=BatchPublishResponse,
    status_code=201,
    summary="Publish many events at once",
)
async def publish_events(
    body: BatchPublishRequest, runtime: Runtime, project_id: Project
) -> Response:
    """Publish up to 1,000 events; events of one topic keep the request's order."""
    check_events(runtime.settings.limits, body.events, batch=True)  # limits
    results = []
    # One submit per event in order: the batcher groups them into few transactions, and
    # awaiting each in turn keeps per-topic order without holding all topics at once.
    futures = [runtime.batcher.submit(_publish_op(project_id, e)) for e in body.events]
    for future in futures:
        result = await future
        assert isinstance(result, Published)
        results.append(_published(runtime, project_id, result))
    return model_response(BatchPublishResponse(items=results), 201)


@router.get("/events", response_model=EventPage, summary="Read a topic's events")
async def list_events(
    topic: Topic,
    runtime: Runtime,
    project_id: Project,
    after: Annotated[
        int, Query(ge=0, le=MAX_DB_INT, description="Return events with seq > after.")
    ] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    """Events of one topic in ``seq`` order, starting after ``after``."""
    items = await runtime.store.list_events(project_id, topic, after=after, limit=limit)
    next_after = items[-1].seq if len(items) == limit else None
    return model_response(EventPage(items=items, next_after=next_after))


def _sse(event: Event) -> str:
    return f"id: {event.seq}\nevent: event\ndata: {event.model_dump_json()}\n\n"


@router.get(
    "/events/stream",
    summary="Stream a topic's events live (server-sent events)",
    response_class=StreamingResponse,
)
async def stream_events(
    request: Request,
    topic: Topic,
    runtime: Runtime,
    project_id: Project,
    after: Annotated[
        int | None,
        Query(ge=0, le=MAX_DB_INT, description="Start after this seq (default: only new events)."),
    ] = None,
    last_event_id: Annotated[
        str | None,
        Header(alias="Last-Event-ID", description="Resume after this seq (overrides 'after')."),
    ] = None,
) -> StreamingResponse:
    """``text/event-stream`` of the topic's events: ``id`` is the event's seq, ``data`` its JSON.

    Reconnect with ``Last-Event-ID`` (browsers do it by themselves) to go on
    where the stream stopped, without losing or repeating events.
    """
    if last_event_id is not None and last_event_id.strip():
        try:
            start = int(last_event_id)
        except ValueError:
            raise ApiProblem(
                400, "invalid_last_event_id", "Last-Event-ID must be an event seq (an integer)"
            ) from None
        if start < 0:
            raise ApiProblem(400, "invalid_last_event_id", "Last-Event-ID must not be negative")
        if start > MAX_DB_INT:  # limits: seqs are 64-bit integers
            raise ApiProblem(400, "invalid_last_event_id", "Last-Event-ID is not an event seq")
    elif after is not None:
        start = after
    else:
        start = await runtime.store.last_seq(project_id, topic)

    async def body() -> AsyncIterator[str]:
        signal = runtime.hub.subscribe(project_id, topic)
        last = start
        try:
            # The id tells a client that drops before the first event where it stood.
            yield f"retry: 1000\nid: {last}\n: streaming {topic} after {last}\n\n"
            while True:
                signal.clear()  # before reading: a publish during the read sets it again
                events = await runtime.store.list_events(
                    project_id, topic, after=last, limit=STREAM_PAGE
                )
                for event in events:
                    yield _sse(event)
                    last = event.seq
                if len(events) == STREAM_PAGE:
                    continue
                if await request.is_disconnected():
                    return
                try:
                    await asyncio.wait_for(signal.wait(), KEEPALIVE_S)
                except TimeoutError:
                    yield ": keepalive\n\n"
        finally:
            runtime.hub.unsubscribe(project_id, topic, signal)

    return StreamingResponse(
        body(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


# ---------------------------------------------------------------------------- waits and resume


def _encode_cursor(cursor: tuple[int, str, str] | None) -> str | None:
    if cursor is None:
        return None
    raw = dumps(list(cursor)).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(raw: str | None) -> tuple[int, str, str] | None:
    if not raw:
        return None
    try:
        value = loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
        created, execution_id, key = value
        return int(created), str(execution_id), str(key)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError) as exc:
        raise ApiProblem(400, "invalid_cursor", "cursor is not one this API returned") from exc


@router.get("/waits", response_model=WaitPage, summary="Executions parked at a wait")
async def list_waits(
    runtime: Runtime,
    project_id: Project,
    kind: Annotated[
        WaitKind | None, Query(description="Only this kind (suspend = waiting for a human).")
    ] = None,
    workflow_id: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> Response:
    """Waiting executions, oldest first, with what they wait for (and suspend data)."""
    items, next_cursor = await runtime.store.list_waits(
        project_id,
        kind=kind.value if kind is not None else None,
        workflow_id=workflow_id,
        limit=limit,
        cursor=_decode_cursor(cursor),
    )
    return model_response(WaitPage(items=items, next_cursor=_encode_cursor(next_cursor)))


@router.post(
    "/executions/{execution_id}/resume",
    response_model=Execution,
    summary="Resume an execution suspended at a step",
    responses={409: {"description": "The execution is not suspended at that step"}},
)
async def resume_execution(
    execution_id: str, body: ResumeRequest, runtime: Runtime, project_id: Project
) -> Response:
    """Deliver ``data`` to the suspend step ``step_key`` and queue the execution.

    A second resume, a resume after the timeout, or a resume of a step that is not
    waiting gets 409 and changes nothing.
    """
    check_payload(runtime.settings.limits, "resume data", body.data)  # limits
    result = await runtime.batcher.submit(
        ResumeOp(
            project_id,
            execution_id,
            body.step_key,
            dumps(body.data),
            resumed_by=body.by,
            comment=body.comment,
        )
    )
    assert isinstance(result, Resumed)
    if result.execution is None:
        raise ApiProblem(404, "execution_not_found", f"execution {execution_id!r} does not exist")
    if not result.resumed:
        raise ApiProblem(409, "not_waiting", result.message)
    runtime.gateway.wake()
    return model_response(result.execution)
