"""The ASGI application factory."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from polos._version import __version__
from polos.errors import InvalidValueError, StorageError
from polos.protocol import API_PREFIX, Health, describe_problems
from polos.storage import describe_url

from ._admin_routes import router as admin_router
from ._approval_links import api_router as approval_api_router  # approval links
from ._approval_links import page_router as approval_page_router  # approval links
from ._event_routes import router as event_router
from ._flow_routes import router as flow_router
from ._metrics_route import router as metrics_router  # metrics
from ._routes import ApiProblem, problem_response, router
from ._runtime import OrchestratorRuntime
from ._schedule_routes import router as schedule_router
from ._session_routes import router as session_router
from ._settings import OrchestratorSettings
from ._trace_routes import router as trace_router  # tracing
from ._ui import ui_router
from ._ui_session import router as ui_session_router

log = logging.getLogger("polos.orchestrator")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class BodyLimit:
    """Refuses request bodies above ``limit`` bytes with 413, declared or streamed."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared < 0 or declared > self.limit:
                    await self._too_large(scope, receive, send)
                    return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _TooLarge(self.limit)
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await self._too_large(scope, receive, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem_response(
            413,
            "payload_too_large",
            f"request body is larger than the limit of {self.limit} bytes (POLOS_MAX_BODY_BYTES)",
        )
        await response(scope, receive, send)


class _TooLarge(HTTPException):
    # An HTTPException, so that FastAPI's body parsing re-raises it instead of turning it into a 400.
    def __init__(self, limit: int) -> None:
        super().__init__(
            413, f"request body is larger than the limit of {limit} bytes (POLOS_MAX_BODY_BYTES)"
        )


def _validation_message(exc: RequestValidationError) -> str:
    return describe_problems(exc.errors()) or "invalid request"


def create_app(settings: OrchestratorSettings | None = None) -> FastAPI:
    """Build the orchestrator's ASGI app. The database opens when the app starts."""
    settings = settings or OrchestratorSettings.from_env()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = await OrchestratorRuntime.open(settings)
        app.state.runtime = runtime
        log.info(
            "orchestrator %s ready on %s", settings.orchestrator_id, describe_url(runtime.store.url)
        )
        try:
            yield
        finally:
            await runtime.close()

    app = FastAPI(
        title="Polos orchestrator",
        version=__version__,
        lifespan=lifespan,
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url="/docs",
        redoc_url=None,
    )

    @app.exception_handler(ApiProblem)
    async def _problem(_: Request, exc: ApiProblem) -> JSONResponse:
        return problem_response(exc.status, exc.code, exc.message)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return problem_response(422, "invalid_request", _validation_message(exc))

    @app.exception_handler(HTTPException)
    async def _http_error(_: Request, exc: HTTPException) -> JSONResponse:
        code = {400: "bad_request", 413: "payload_too_large"}.get(exc.status_code, "http_error")
        return problem_response(exc.status_code, code, str(exc.detail))

    @app.exception_handler(404)
    async def _not_found(request: Request, _: Exception) -> JSONResponse:
        return problem_response(404, "not_found", f"no route {request.method} {request.url.path}")

    @app.exception_handler(405)
    async def _not_allowed(request: Request, _: Exception) -> JSONResponse:
        return problem_response(
            405, "method_not_allowed", f"{request.method} is not allowed on {request.url.path}"
        )

    @app.exception_handler(StorageError)
    async def _storage(_: Request, exc: StorageError) -> JSONResponse:
        if isinstance(exc, InvalidValueError):  # e.g. a NUL character: the request is wrong
            return problem_response(422, "invalid_value", str(exc))
        # The database is down or restarting: a retryable condition, not a server bug.
        return problem_response(503, "database_unavailable", str(exc))

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(
            500, "internal", f"internal error ({type(exc).__name__}); see the orchestrator log"
        )

    @app.get("/health", response_model=Health, tags=["health"])
    async def health(request: Request) -> Health:
        runtime: OrchestratorRuntime = request.app.state.runtime
        return Health(
            version=__version__,
            orchestrator_id=settings.orchestrator_id,
            database=runtime.store.dialect.name,
        )

    app.include_router(router)
    app.include_router(event_router)
    app.include_router(admin_router)
    app.include_router(ui_session_router)
    app.include_router(flow_router)
    app.include_router(schedule_router)
    app.include_router(session_router)
    app.include_router(metrics_router)  # metrics: GET /metrics (not in the OpenAPI schema)
    app.include_router(trace_router)  # tracing
    app.include_router(ui_router)
    app.include_router(approval_api_router)  # approval links: POST .../approval-links
    app.include_router(approval_page_router)  # approval links: /approve/{token}, public
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    return app
