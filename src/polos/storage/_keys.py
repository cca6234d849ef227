"""Projects and API keys: keys are random, shown once, and stored only as a hash.

A token is ``polos_<id>_<secret>``: ``id`` (16 lower-case hex characters) names the row,
``secret`` (32 random bytes, base64url) is checked against ``sha256(secret)``. A fast hash
is right here: the secret has 256 bits of entropy, so there is nothing to brute-force
(unlike a password), and every API request checks one.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from polos.protocol import ApiKeyInfo, ProjectInfo

from . import _tables as t

TOKEN_PREFIX = "polos_"
_TOKEN = re.compile(r"^polos_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")
ADMIN = "admin"
PROJECT = "project"


@dataclass(frozen=True, slots=True)
class KeyRow:
    """What authentication needs of a key (its hash included, never sent anywhere)."""

    info: ApiKeyInfo
    secret_hash: str


def new_token() -> tuple[str, str, str]:
    """A fresh ``(key id, secret, token)``."""
    key_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
    return key_id, secret, f"{TOKEN_PREFIX}{key_id}_{secret}"


def parse_token(token: str) -> tuple[str, str] | None:
    """``(key id, secret)`` of a well-formed token, else ``None``."""
    match = _TOKEN.match(token.strip())
    return (match.group(1), match.group(2)) if match else None


def hash_secret(secret: str) -> str:
    """The stored form of a key's secret."""
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_matches(row: KeyRow, secret: str) -> bool:
    """Constant-time check of a presented secret against the stored hash."""
    return hmac.compare_digest(row.secret_hash, hash_secret(secret))


def _info(row: Mapping[Any, Any]) -> ApiKeyInfo:
    return ApiKeyInfo(
        id=row["id"],
        project_id=row["project_id"],
        name=row["name"],
        role=row["role"],
        created_at=row["created_at"],
        last_used_at=row["last_used_at"],
        revoked_at=row["revoked_at"],
    )


def create_key(
    conn: Connection, project_id: str | None, name: str, role: str, now: int
) -> tuple[ApiKeyInfo, str]:
    """Store a new key; returns it and its token (the only time the token exists)."""
    if role not in (ADMIN, PROJECT):
        raise ValueError(f"role must be {ADMIN!r} or {PROJECT!r}")
    if (role == PROJECT) != (project_id is not None):
        raise ValueError("a project key needs a project; an admin key has none")
    key_id, secret, token = new_token()
    values = {
        "id": key_id,
        "project_id": project_id,
        "name": name,
        "role": role,
        "secret_hash": hash_secret(secret),
        "created_at": now,
        "last_used_at": None,
        "revoked_at": None,
    }
    conn.execute(t.api_keys.insert().values(**values))
    return _info(values), token


def find_key(conn: Connection, key_id: str) -> KeyRow | None:
    """A key by id (revoked ones too: the caller decides)."""
    row = conn.execute(sa.select(t.api_keys).where(t.api_keys.c.id == key_id)).mappings().first()
    return None if row is None else KeyRow(info=_info(row), secret_hash=row["secret_hash"])


def list_keys(conn: Connection, project_id: str | None) -> list[ApiKeyInfo]:
    """Keys of one project (``None``: every key), newest first; hashes are not read."""
    k = t.api_keys
    query = sa.select(
        k.c.id,
        k.c.project_id,
        k.c.name,
        k.c.role,
        k.c.created_at,
        k.c.last_used_at,
        k.c.revoked_at,
    ).order_by(k.c.created_at.desc(), k.c.id)
    if project_id is not None:
        query = query.where(k.c.project_id == project_id)
    return [_info(r) for r in conn.execute(query).mappings().all()]


def revoke_key(conn: Connection, key_id: str, now: int) -> ApiKeyInfo | None:
    """Revoke a key (idempotent: a revoked key keeps its first revocation time)."""
    k = t.api_keys
    conn.execute(
        k.update().where(k.c.id == key_id, k.c.revoked_at.is_(None)).values(revoked_at=now)
    )
    found = find_key(conn, key_id)
    return None if found is None else found.info


def touch_key(conn: Connection, key_id: str, now: int) -> None:
    """Record a use (callers throttle this: it is a write)."""
    conn.execute(t.api_keys.update().where(t.api_keys.c.id == key_id).values(last_used_at=now))


def count_admin_keys(conn: Connection) -> int:
    """Admin keys that still work."""
    k = t.api_keys
    return int(
        conn.execute(
            sa.select(sa.func.count()).where(k.c.role == ADMIN, k.c.revoked_at.is_(None))
        ).scalar_one()
    )


def create_project(conn: Connection, project_id: str, name: str, now: int) -> ProjectInfo | None:
    """A new project; ``None`` if the id is taken."""
    p = t.projects
    if conn.execute(sa.select(p.c.id).where(p.c.id == project_id)).first() is not None:
        return None
    conn.execute(p.insert().values(id=project_id, name=name, created_at=now))
    return ProjectInfo(id=project_id, name=name, created_at=now)


def list_projects(conn: Connection) -> list[ProjectInfo]:
    """Every project, oldest first."""
    p = t.projects
    rows = conn.execute(sa.select(p).order_by(p.c.created_at, p.c.id)).mappings().all()
    return [ProjectInfo(id=r["id"], name=r["name"], created_at=r["created_at"]) for r in rows]
