"""Agent conversation memory on the wire (``/api/v1/sessions``).

A session's memory is an optional rolling ``summary`` plus the recent ``messages``.
The orchestrator stores each message as an opaque JSON object (only its ``role``
is checked here); the agent layer gives messages their meaning. Saves carry the
version they were based on, so that two runs of one session cannot silently
overwrite each other (optimistic concurrency). See ``docs/sessions.md``.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

SESSION_ID_PATTERN = r"^[A-Za-z0-9_.:/@-]+$"
"""Session ids: letters, digits and ``_ . : / @ -`` (like queue names)."""

SESSION_ID_MAX_LENGTH = 200
"""Longest session id."""

MAX_SESSION_MESSAGES = 10_000
"""Most messages one save may store (compact older ones into the summary)."""

_SESSION_ID = re.compile(SESSION_ID_PATTERN)


def validate_session_id(value: str) -> str:
    """``value`` if it is a valid session id.

    Raises:
        ValueError: empty, longer than 200 characters, or with other characters.
    """
    if not value:
        raise ValueError("session id must be a non-empty string")
    if len(value) > SESSION_ID_MAX_LENGTH:
        raise ValueError(f"session id is longer than {SESSION_ID_MAX_LENGTH} characters")
    if not _SESSION_ID.match(value):
        raise ValueError(
            f"session id {value!r} may only contain letters, digits and the characters _ . : / @ -"
        )
    return value


def _check_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # The storage treats messages as opaque, but an object without a role cannot be
    # replayed into any model: refuse it here rather than break a later run.
    for index, message in enumerate(messages):
        role = message.get("role")
        if not isinstance(role, str) or not role:
            raise ValueError(
                f"message {index} has no 'role' string (every message is an object with a role)"
            )
    return messages


class SessionMemory(BaseModel):
    """``GET/PUT /sessions/{id}``: a session's memory and its version.

    A session that was never saved has version 0, no summary and no messages.
    """

    id: str
    summary: str | None = Field(default=None, description="Rolling summary of older turns.")
    messages: list[dict[str, Any]] = Field(
        default_factory=list, description="The recent messages, oldest first."
    )
    version: int = Field(description="Bumped by every save; 0 for a session not saved yet.")
    created_at: int | None = Field(default=None, description="First save (epoch ms).")
    updated_at: int | None = Field(default=None, description="Last save (epoch ms).")


class SessionSave(BaseModel):
    """``PUT /sessions/{id}``: replace a session's memory.

    ``expected_version`` is the version the new memory was built from: the save is
    refused (409 ``version_conflict``) unless the stored version still equals it
    (0: the session must not exist yet). ``None`` overwrites whatever is stored.
    """

    model_config = ConfigDict(extra="forbid")

    summary: str | None = Field(default=None, description="Rolling summary of older turns.")
    messages: list[dict[str, Any]] = Field(
        max_length=MAX_SESSION_MESSAGES,
        description="Every message to keep, oldest first; each an object with a 'role'.",
    )
    expected_version: int | None = Field(
        default=None,
        ge=0,
        le=2**63 - 1,  # limits: a 64-bit integer, as the databases store it
        description="Save only if the stored version is this (0: not saved yet); "
        "null: overwrite unconditionally.",
    )

    @field_validator("messages")
    @classmethod
    def _roles(cls, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return _check_messages(value)

    @field_validator("summary")
    @classmethod
    def _no_nul(cls, value: str | None) -> str | None:
        # PostgreSQL text cannot hold NUL: refuse it on every store alike (messages are
        # stored as JSON, where it is escaped, so they may contain it).
        if value is not None and "\x00" in value:
            raise ValueError("summary must not contain NUL characters (\\x00)")
        return value


class SessionSummaryInfo(BaseModel):
    """One session in a list (without its messages)."""

    id: str
    version: int
    message_count: int = Field(description="How many messages it stores.")
    has_summary: bool = Field(default=False, description="Whether it has a summary.")
    created_at: int
    updated_at: int


class SessionList(BaseModel):
    """``GET /sessions``: sessions, most recently saved first."""

    items: list[SessionSummaryInfo]
    next_cursor: str | None = Field(
        default=None, description="Pass as 'cursor' to get the next page."
    )
