"""Agent session memory: get, save (with a version check), list and delete.

A save names the version it was based on (``expected_version``) and is done by one
statement whose condition is that version, so that the check and the write cannot be
separated by another save, with any number of orchestrators:

* ``None``: an upsert (``INSERT ... ON CONFLICT DO UPDATE``) that bumps the version;
* ``0``: ``INSERT ... ON CONFLICT DO NOTHING``; no row inserted means the session exists;
* ``n``: ``UPDATE ... WHERE version = n``; no row updated means another save (or a
  delete) came first. On PostgreSQL a concurrent update of the same row waits for the
  first to commit and then re-checks ``version = n`` against the new row, so of two
  saves based on one version exactly one wins.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from polos.errors import PolosError
from polos.protocol import SessionMemory, SessionSave, SessionSummaryInfo, now_ms

from . import _tables as t
from ._codec import dumps, loads

if TYPE_CHECKING:
    from ._store import Store

_UPSERT = sa.text(
    "INSERT INTO agent_sessions (project_id, id, summary, messages, version, created_at, "
    "updated_at) VALUES (:p, :id, :summary, :messages, 1, :now, :now) "
    "ON CONFLICT (project_id, id) DO UPDATE SET summary = excluded.summary, "
    "messages = excluded.messages, version = agent_sessions.version + 1, "
    "updated_at = excluded.updated_at RETURNING version, created_at"
)
_INSERT_NEW = sa.text(
    "INSERT INTO agent_sessions (project_id, id, summary, messages, version, created_at, "
    "updated_at) VALUES (:p, :id, :summary, :messages, 1, :now, :now) ON CONFLICT DO NOTHING"
)
_UPDATE_AT = sa.text(
    "UPDATE agent_sessions SET summary = :summary, messages = :messages, version = version + 1, "
    "updated_at = :now WHERE project_id = :p AND id = :id AND version = :expected "
    "RETURNING version, created_at"
)
_VERSION = sa.text("SELECT version FROM agent_sessions WHERE project_id = :p AND id = :id")
_READ = sa.text("SELECT * FROM agent_sessions WHERE project_id = :p AND id = :id")
_DELETE = sa.text("DELETE FROM agent_sessions WHERE project_id = :p AND id = :id")


class SessionVersionConflict(PolosError):
    """A session save was refused: the stored version is not the one it expected.

    Not a :class:`~polos.errors.StorageError` (the database is fine; retrying the same
    save cannot succeed): the API answers it with 409 ``version_conflict``.

    Attributes:
        session_id: the session.
        expected: the ``expected_version`` of the save.
        actual: the version stored now (0: the session does not exist).
    """

    def __init__(self, session_id: str, expected: int, actual: int) -> None:
        if expected == 0:
            message = (
                f"session {session_id!r} already exists (version {actual}): expected_version 0 "
                "only saves a new session; load it and save again"
            )
        elif actual == 0:
            message = (
                f"session {session_id!r} does not exist (expected version {expected}): it was "
                "deleted meanwhile; load it and save again"
            )
        else:
            message = (
                f"session {session_id!r} is at version {actual}, not {expected}: another run "
                "saved it meanwhile; load it and save again"
            )
        super().__init__(message)
        self.session_id = session_id
        self.expected = expected
        self.actual = actual


def session_from_row(row: Mapping[Any, Any]) -> SessionMemory:
    """Convert an ``agent_sessions`` row to the API's :class:`SessionMemory`."""
    return SessionMemory(
        id=row["id"],
        summary=row["summary"],
        messages=loads(row["messages"]),
        version=row["version"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


class SessionStore:
    """The session-memory queries of a :class:`~polos.storage.Store` (``store.sessions``)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        s = t.agent_sessions
        # Counted by the database, so that a list does not fetch every session's messages.
        # PostgreSQL's json_array_length takes json, not text; SQLite's takes the text.
        stored: sa.ColumnElement[Any] = (
            sa.cast(s.c.messages, sa.JSON) if store.dialect.name == "postgres" else s.c.messages
        )
        self._summary_columns = (
            s.c.id,
            s.c.version,
            sa.func.json_array_length(stored).label("message_count"),
            s.c.summary.is_not(None).label("has_summary"),
            s.c.created_at,
            s.c.updated_at,
        )

    async def get(self, project_id: str, session_id: str) -> SessionMemory:
        """The session's memory; a session never saved is version 0 with nothing in it."""

        def go(conn: Connection) -> SessionMemory:
            row = conn.execute(_READ, {"p": project_id, "id": session_id}).mappings().first()
            if row is None:
                return SessionMemory(id=session_id, version=0)
            return session_from_row(row)

        return await self._store.read(go)

    async def save(
        self, project_id: str, session_id: str, body: SessionSave, *, now: int | None = None
    ) -> SessionMemory:
        """Replace the session's summary and messages; returns the memory as saved.

        Raises:
            SessionVersionConflict: ``body.expected_version`` is not the stored version.
        """
        at = now if now is not None else now_ms()
        params = {
            "p": project_id,
            "id": session_id,
            "summary": body.summary,
            "messages": dumps(body.messages),
            "now": at,
        }
        expected = body.expected_version

        def go(conn: Connection) -> tuple[int, int]:
            if expected is None:
                version, created = conn.execute(_UPSERT, params).one()
                return int(version), int(created)
            if expected == 0:
                if conn.execute(_INSERT_NEW, params).rowcount == 1:
                    return 1, at
            else:
                row = conn.execute(_UPDATE_AT, {**params, "expected": expected}).first()
                if row is not None:
                    return int(row[0]), int(row[1])
            actual = conn.scalar(_VERSION, {"p": project_id, "id": session_id})
            raise SessionVersionConflict(session_id, expected, int(actual or 0))

        version, created = await self._store.write(go)
        return SessionMemory(
            id=session_id,
            summary=body.summary,
            messages=body.messages,
            version=version,
            created_at=created,
            updated_at=at,
        )

    async def list_sessions(
        self, project_id: str, *, limit: int = 50, cursor: tuple[int, str] | None = None
    ) -> tuple[list[SessionSummaryInfo], tuple[int, str] | None]:
        """A page of sessions, most recently saved first, and the next page's position."""
        s = t.agent_sessions
        query = sa.select(*self._summary_columns).where(s.c.project_id == project_id)
        if cursor is not None:
            updated, last_id = cursor
            query = query.where(
                sa.or_(
                    s.c.updated_at < updated,
                    sa.and_(s.c.updated_at == updated, s.c.id < last_id),
                )
            )
        query = query.order_by(s.c.updated_at.desc(), s.c.id.desc()).limit(limit + 1)

        def go(conn: Connection) -> tuple[list[SessionSummaryInfo], tuple[int, str] | None]:
            rows = conn.execute(query).mappings().all()
            items = [
                SessionSummaryInfo(
                    id=r["id"],
                    version=r["version"],
                    message_count=r["message_count"] or 0,
                    has_summary=bool(r["has_summary"]),
                    created_at=r["created_at"],
                    updated_at=r["updated_at"],
                )
                for r in rows[:limit]
            ]
            more = len(rows) > limit
            return items, (items[-1].updated_at, items[-1].id) if more else None

        return await self._store.read(go)

    async def delete(self, project_id: str, session_id: str) -> bool:
        """Delete the session's memory; False if there was none."""

        def go(conn: Connection) -> bool:
            return bool(conn.execute(_DELETE, {"p": project_id, "id": session_id}).rowcount)

        return await self._store.write(go)
