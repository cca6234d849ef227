"""The web UI's sign-in: an API key in, a session cookie out (``/ui/session``)."""

from __future__ import annotations

import json

from fastapi import APIRouter, Request
from fastapi.responses import Response

from polos.protocol import SessionInfo, SessionRequest

from ._auth import Caller
from ._routes import ApiProblem, Runtime, model_response
from ._session import (
    CSRF_PURPOSE,
    SESSION_COOKIE,
    authenticate,
    new_session,
    session_caller,
)

router = APIRouter(prefix="/ui/session", include_in_schema=False)


def _info(caller: Caller, csrf: str | None) -> SessionInfo:
    return SessionInfo(
        key_id=caller.key_id,
        name=caller.name,
        role="admin" if caller.is_admin else "project",
        project_id=caller.project_id,
        local=caller.local,
        csrf_token=csrf,
    )


@router.post("")
async def sign_in(body: SessionRequest, runtime: Runtime) -> Response:
    """Check the API key; set the session cookie; answer who signed in and the CSRF token."""
    if runtime.auth.local:
        from ._auth import LOCAL_CALLER

        return model_response(_info(LOCAL_CALLER, None))
    caller = await runtime.auth.from_token(body.api_key.strip())
    if caller is None:
        raise ApiProblem(
            401, "unauthorized", "that API key is not valid (malformed, unknown or revoked)"
        )
    cookie, csrf, max_age = new_session(runtime, caller)
    response = model_response(_info(caller, csrf))
    response.set_cookie(
        SESSION_COOKIE,
        cookie,
        max_age=max_age,
        httponly=True,
        # Browsers keep Secure cookies from HTTPS and loopback addresses only: serve the
        # UI behind TLS anywhere else.
        secure=True,
        samesite="strict",
        path="/",
    )
    return response


@router.get("")
async def whoami(request: Request, runtime: Runtime) -> Response:
    """Who the caller is; with a session cookie, the CSRF token to send back."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie and not runtime.auth.local:
        caller = await session_caller(runtime, cookie)
        if caller is None:
            raise ApiProblem(
                401, "unauthorized", "the UI session expired or was ended: sign in again"
            )
        return model_response(_info(caller, runtime.signer.mac(CSRF_PURPOSE, cookie)))
    return model_response(_info(await authenticate(request, runtime), None))


@router.delete("")
async def sign_out() -> Response:
    """End the session (the cookie is dropped)."""
    response = Response(json.dumps({"signed_out": True}), media_type="application/json")
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, secure=True, samesite="strict")
    return response
