"""Projects, API keys and UI sessions on the wire."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

_ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"


class ProjectInfo(BaseModel):
    """A project: executions, workflows, events, schedules and keys live in exactly one."""

    id: str
    name: str
    created_at: int


class ProjectList(BaseModel):
    """Every project (admin keys only)."""

    items: list[ProjectInfo]


class CreateProjectRequest(BaseModel):
    """Body of ``POST /api/v1/admin/projects``."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=_ID, description="Letters, digits, '_', '-', '.'; 1-63 characters.")
    name: str = Field(default="", max_length=200)


class ApiKeyInfo(BaseModel):
    """An API key as listed: never its secret."""

    id: str = Field(description="The key's public id (the part after 'polos_' in the token).")
    project_id: str | None = Field(description="The project it is confined to; null: an admin key.")
    name: str
    role: Literal["admin", "project"]
    created_at: int
    last_used_at: int | None = None
    revoked_at: int | None = None


class ApiKeyCreated(ApiKeyInfo):
    """A new key with its token: shown this once, stored only as a hash."""

    token: str = Field(description="Send as 'Authorization: Bearer <token>'. Not shown again.")


class ApiKeyList(BaseModel):
    """API keys, newest first."""

    items: list[ApiKeyInfo]


class CreateApiKeyRequest(BaseModel):
    """Body of ``POST /api/v1/admin/keys``."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, description="What the key is for.")
    role: Literal["admin", "project"] = "project"
    project_id: str | None = Field(
        default=None, description="Required for a project key; absent for an admin key."
    )


class SessionRequest(BaseModel):
    """Body of ``POST /ui/session``: sign in to the web UI with an API key."""

    model_config = ConfigDict(extra="forbid")

    api_key: str = Field(min_length=1, max_length=200)


class SessionInfo(BaseModel):
    """Who the caller is (``GET /ui/session``), and the CSRF token the UI must send back."""

    key_id: str | None = Field(description="The API key behind the session; null in local mode.")
    name: str
    role: Literal["admin", "project"]
    project_id: str | None
    local: bool = Field(description="The orchestrator runs in local mode (no keys).")
    csrf_token: str | None = Field(
        default=None,
        description="Send as 'X-CSRF-Token' on every state-changing request made with the cookie.",
    )
