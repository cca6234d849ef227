"""``client.sessions``: the conversation memory of agent sessions, stored by the orchestrator.

A session's memory is an optional rolling summary plus the recent messages (JSON
objects with a ``role``). Every save bumps the session's version; a save that names
the version it was based on (``expected_version``) is refused with
:class:`~polos.errors.SessionConflictError` when another save came first. Each call
has a blocking ``_sync`` twin. See ``docs/sessions.md``.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from polos.protocol import SessionList, SessionMemory

from ._base import _jsonable

if TYPE_CHECKING:
    from ._client import PolosClient


def _path(session_id: str) -> str:
    """The session's URL path. Ids may contain ``/`` (sent as ``%2F``); an id made only of
    dots is sent as ``%2E``s, or the URL would be read as ``.``/``..`` segments."""
    encoded = quote(session_id, safe="")
    if encoded and set(encoded) == {"."}:
        encoded = "%2E" * len(encoded)
    return f"/sessions/{encoded}"


class SessionsClient:
    """Load, save, list and delete agent session memory (``client.sessions``)."""

    def __init__(self, client: PolosClient) -> None:
        self.client = client

    async def get(self, session_id: str) -> SessionMemory:
        """The session's summary, messages and version.

        A session never saved is not an error: it has version 0 and no messages.

        Raises:
            ApiError: 422 for an invalid session id.
        """
        return SessionMemory.model_validate(await self.client._request("GET", _path(session_id)))

    async def save(
        self,
        session_id: str,
        messages: Sequence[Mapping[str, Any]],
        summary: str | None = None,
        expected_version: int | None = None,
    ) -> SessionMemory:
        """Replace the session's memory; returns it as saved (its version one higher).

        ``expected_version`` is the version the new memory was built from (the
        ``version`` of the :meth:`get` it started with; 0 for a session that must not
        exist yet). ``None`` overwrites whatever is stored.

        Raises:
            SessionConflictError: the stored version is not ``expected_version`` (409):
                load the session again, merge, and save again.
            ApiError: 422 for an invalid id or messages (each must be an object with a
                string ``role``; at most 10,000), 413 for a body over the size limit.
        """
        body = {
            "messages": _jsonable(builtins.list(messages)),
            "summary": summary,
            "expected_version": expected_version,
        }
        data = await self.client._request("PUT", _path(session_id), json=body)
        return SessionMemory.model_validate(data)

    async def delete(self, session_id: str) -> None:
        """Forget the session's memory (a later run with this id starts afresh).

        Raises:
            ApiError: 404 ``session_not_found`` if nothing is stored for it.
        """
        await self.client._request("DELETE", _path(session_id))

    async def list(self, limit: int = 50, cursor: str | None = None) -> SessionList:
        """A page of sessions, most recently saved first (version and message count, not the
        messages); pass its ``next_cursor`` as ``cursor`` for the next page."""
        params: dict[str, Any] = {"limit": limit}
        if cursor:
            params["cursor"] = cursor
        return SessionList.model_validate(
            await self.client._request("GET", "/sessions", params=params)
        )

    # ------------------------------------------------------------------ blocking twins

    def _run(self, call: Any) -> Any:
        return self.client._portal.run(self.client._in_portal(call))

    def get_sync(self, session_id: str) -> SessionMemory:
        """Blocking :meth:`get`."""
        result: SessionMemory = self._run(lambda c: c.sessions.get(session_id))
        return result

    def save_sync(
        self,
        session_id: str,
        messages: Sequence[Mapping[str, Any]],
        summary: str | None = None,
        expected_version: int | None = None,
    ) -> SessionMemory:
        """Blocking :meth:`save`."""
        result: SessionMemory = self._run(
            lambda c: c.sessions.save(session_id, messages, summary, expected_version)
        )
        return result

    def delete_sync(self, session_id: str) -> None:
        """Blocking :meth:`delete`."""
        self._run(lambda c: c.sessions.delete(session_id))

    def list_sync(self, limit: int = 50, cursor: str | None = None) -> SessionList:
        """Blocking :meth:`list`."""
        result: SessionList = self._run(lambda c: c.sessions.list(limit, cursor))
        return result
