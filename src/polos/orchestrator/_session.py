"""Authenticating one HTTP request: local mode, a bearer API key, or the UI's session cookie.

The web UI signs in once with an API key (``POST /ui/session``) and then uses a cookie:
signed (HMAC, purpose ``ui-session``) with the server secret, ``HttpOnly`` (scripts cannot
read it), ``Secure`` (HTTPS, or a loopback address), ``SameSite=Strict`` and valid for
:data:`SESSION_SECONDS`. It names the API key, which is checked on every request, so
revoking the key ends its sessions at once. State-changing requests made with the cookie
must also carry ``X-CSRF-Token``, a MAC of the session that only the UI's own page can
obtain (``GET /ui/session``); a forged cross-site form or fetch cannot.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import Request

from polos.protocol import now_ms

from ._auth import LOCAL_CALLER, Caller, bearer_token
from ._signing import TokenError

if TYPE_CHECKING:
    from ._runtime import OrchestratorRuntime

NO_CREDENTIALS = (
    "this orchestrator requires an API key: send 'Authorization: Bearer <key>' "
    "(create one with 'polos-server keys create'; set POLOS_API_KEY for clients and workers)"
)
BAD_CREDENTIALS = "the API key is not valid (malformed, unknown or revoked)"
SESSION_COOKIE = "polos_session"
SESSION_PURPOSE = "ui-session"
CSRF_PURPOSE = "ui-csrf"
CSRF_HEADER = "x-csrf-token"
SESSION_SECONDS = 12 * 3600
_SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


async def authenticate(request: Request, runtime: OrchestratorRuntime) -> Caller:
    """The caller of ``request``, or an ``ApiProblem`` 401 saying what is missing."""
    from ._routes import ApiProblem  # the routes module imports this one

    auth = runtime.auth
    if auth.local:
        return LOCAL_CALLER
    header = request.headers.get("authorization")
    if header:
        token = bearer_token(header)
        if token is None:
            raise ApiProblem(401, "unauthorized", "the Authorization header must be 'Bearer <key>'")
        caller = await auth.from_token(token)
        if caller is None:
            raise ApiProblem(401, "unauthorized", BAD_CREDENTIALS)
        return caller
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        caller = await session_caller(runtime, cookie)
        if caller is None:
            raise ApiProblem(
                401, "unauthorized", "the UI session expired or was ended: sign in again"
            )
        if request.method not in _SAFE_METHODS and not runtime.signer.check_mac(
            CSRF_PURPOSE, cookie, request.headers.get(CSRF_HEADER, "")
        ):
            raise ApiProblem(403, "csrf_failed", "missing or wrong X-CSRF-Token for this session")
        return caller
    raise ApiProblem(401, "unauthorized", NO_CREDENTIALS)


async def session_caller(runtime: OrchestratorRuntime, cookie: str) -> Caller | None:
    """The caller of a UI session cookie, if it is authentic, current and its key works."""
    try:
        claims = runtime.signer.verify(SESSION_PURPOSE, cookie)
    except TokenError:
        return None
    key_id = claims.get("k")
    if not isinstance(key_id, str):
        return None
    row = await runtime.auth.key(key_id)
    if row is None or row.info.revoked_at is not None:
        return None
    return Caller(
        key_id=key_id,
        name=row.info.name,
        role=row.info.role,
        project_id=row.info.project_id,
        via_session=True,
    )


def new_session(runtime: OrchestratorRuntime, caller: Caller) -> tuple[str, str, int]:
    """A session cookie for ``caller``, its CSRF token, and its lifetime in seconds."""
    cookie = runtime.signer.sign(
        SESSION_PURPOSE, {"k": caller.key_id}, now_ms() + SESSION_SECONDS * 1000
    )
    return cookie, runtime.signer.mac(CSRF_PURPOSE, cookie), SESSION_SECONDS
