"""Projects and API keys over HTTP (``/api/v1/admin/...``): admin keys only."""

from __future__ import annotations

from fastapi import APIRouter, Query
from fastapi.responses import Response

from polos.protocol import (
    API_PREFIX,
    ApiKeyCreated,
    ApiKeyInfo,
    ApiKeyList,
    CreateApiKeyRequest,
    CreateProjectRequest,
    ProjectInfo,
    ProjectList,
)
from polos.storage import ADMIN, PROJECT

from ._routes import _ERRORS, ApiProblem, CallerDep, Runtime, model_response

router = APIRouter(prefix=f"{API_PREFIX}/admin", tags=["admin"], responses=_ERRORS)


def _admin_only(caller: CallerDep) -> None:
    if not caller.is_admin:
        raise ApiProblem(403, "forbidden", "this needs an admin API key")


@router.get("/projects", response_model=ProjectList, summary="List projects")
async def list_projects(runtime: Runtime, caller: CallerDep) -> Response:
    """Every project."""
    _admin_only(caller)
    return model_response(ProjectList(items=await runtime.store.list_projects()))


@router.post(
    "/projects",
    response_model=ProjectInfo,
    status_code=201,
    summary="Create a project",
    responses={409: {"description": "The id is taken"}},
)
async def create_project(
    body: CreateProjectRequest, runtime: Runtime, caller: CallerDep
) -> Response:
    """A new, empty project; give it keys with ``POST /admin/keys``."""
    _admin_only(caller)
    created = await runtime.store.create_project(body.id, body.name)
    if created is None:
        raise ApiProblem(409, "project_exists", f"project {body.id!r} already exists")
    return model_response(created, 201)


@router.get("/keys", response_model=ApiKeyList, summary="List API keys")
async def list_keys(
    runtime: Runtime,
    caller: CallerDep,
    project_id: str | None = Query(default=None, max_length=200),
) -> Response:
    """Keys (never their secrets), newest first; ``project_id`` narrows to one project."""
    _admin_only(caller)
    return model_response(ApiKeyList(items=await runtime.store.list_api_keys(project_id)))


@router.post("/keys", response_model=ApiKeyCreated, status_code=201, summary="Create an API key")
async def create_key(body: CreateApiKeyRequest, runtime: Runtime, caller: CallerDep) -> Response:
    """A new key. Its token is in this answer only: it is stored as a hash."""
    _admin_only(caller)
    if body.role == PROJECT:
        if body.project_id is None:
            raise ApiProblem(422, "invalid_value", "a project key needs project_id")
        if not await runtime.project_exists(body.project_id):
            raise ApiProblem(
                404, "project_not_found", f"project {body.project_id!r} does not exist"
            )
    elif body.project_id is not None:
        raise ApiProblem(422, "invalid_value", "an admin key belongs to no project")
    info, token = await runtime.store.create_api_key(
        body.project_id, body.name, ADMIN if body.role == ADMIN else PROJECT
    )
    return model_response(ApiKeyCreated(**info.model_dump(), token=token), 201)


@router.delete("/keys/{key_id}", response_model=ApiKeyInfo, summary="Revoke an API key")
async def revoke_key(key_id: str, runtime: Runtime, caller: CallerDep) -> Response:
    """Revoke at once: requests with it fail from now on and its workers are disconnected."""
    _admin_only(caller)
    info = await runtime.store.revoke_api_key(key_id)
    if info is None:
        raise ApiProblem(404, "key_not_found", f"API key {key_id!r} does not exist")
    await runtime.keys_revoked([key_id])
    return model_response(info)
