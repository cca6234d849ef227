"""HTTP routes for agent session memory: get, save (versioned), list, delete."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import Response

from polos.protocol import (
    API_PREFIX,
    SESSION_ID_MAX_LENGTH,
    ErrorBody,
    SessionList,
    SessionMemory,
    SessionSave,
    validate_session_id,
)
from polos.storage import SessionVersionConflict

from ._routes import (
    _ERRORS,
    ApiProblem,
    Project,
    Runtime,
    _decode_cursor,
    _encode_cursor,
    model_response,
)

router = APIRouter(prefix=f"{API_PREFIX}/sessions", responses=_ERRORS, tags=["sessions"])

_CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorBody, "description": "Another save changed the version first"}
}


async def _session_id(
    session_id: Annotated[
        str,
        Path(
            description="The session id: letters, digits and _ . : / @ - "
            f"(1-{SESSION_ID_MAX_LENGTH} characters)."
        ),
    ],
) -> str:
    # Checked here rather than with Path(pattern=...): the 422 then says which characters
    # are allowed instead of quoting a regular expression.
    try:
        return validate_session_id(session_id)
    except ValueError as exc:
        raise ApiProblem(422, "invalid_session_id", str(exc)) from None


SessionId = Annotated[str, Depends(_session_id)]


@router.get("", response_model=SessionList, summary="List sessions, most recently saved first")
async def list_sessions(
    runtime: Runtime,
    project_id: Project,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=1000)] = None,
) -> Response:
    """Sessions with their version and message count (not their messages); pass
    ``next_cursor`` back as ``cursor`` for the next page."""
    items, after = await runtime.store.sessions.list_sessions(
        project_id, limit=limit, cursor=_decode_cursor(cursor)
    )
    return model_response(SessionList(items=items, next_cursor=_encode_cursor(after)))


@router.get("/{session_id:path}", response_model=SessionMemory, summary="Load a session's memory")
async def get_session(session_id: SessionId, runtime: Runtime, project_id: Project) -> Response:
    """The session's summary, messages and version. A session never saved is not an
    error: it comes back with version 0 and no messages (a new conversation)."""
    return model_response(await runtime.store.sessions.get(project_id, session_id))


@router.put(
    "/{session_id:path}",
    response_model=SessionMemory,
    summary="Save a session's memory",
    responses=_CONFLICT,
)
async def save_session(
    session_id: SessionId, body: SessionSave, runtime: Runtime, project_id: Project
) -> Response:
    """Replace the summary and messages; the version goes up by one.

    With ``expected_version``, only if the stored version is still that one (0: the
    session must not exist yet); otherwise 409 ``version_conflict`` and nothing changes.
    """
    try:
        saved = await runtime.store.sessions.save(project_id, session_id, body)
    except SessionVersionConflict as exc:
        raise ApiProblem(409, "version_conflict", str(exc)) from None
    return model_response(saved)


@router.delete(
    "/{session_id:path}", status_code=204, response_class=Response, summary="Delete a session"
)
async def delete_session(session_id: SessionId, runtime: Runtime, project_id: Project) -> Response:
    """Forget the session's memory; a later run with this id starts a new conversation."""
    if not await runtime.store.sessions.delete(project_id, session_id):
        raise ApiProblem(404, "session_not_found", f"session {session_id!r} does not exist")
    return Response(status_code=204)
