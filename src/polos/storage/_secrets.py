"""Server secrets: random keys shared by every orchestrator of one database.

A secret is made once, on first use, by whichever orchestrator asks first:
``INSERT ... ON CONFLICT DO NOTHING`` then ``SELECT`` in one transaction. Under
PostgreSQL's READ COMMITTED, a second orchestrator racing the first either waits for
its insert to commit (and then inserts nothing) or finds the row already there; the
``SELECT`` that follows, a statement with a fresh snapshot, reads the one committed
value. Every orchestrator therefore ends up with the same bytes.

The value is kept as urlsafe base64 text in ``server_secrets``; callers get bytes.
Whoever can read that table can forge what the secret signs: protect database
backups accordingly (or give the key from outside, see ``POLOS_SECRET_KEY`` in
``polos.orchestrator._signing``, so that it is never stored).
"""

from __future__ import annotations

import base64
import binascii
import secrets
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from polos.protocol import now_ms

if TYPE_CHECKING:
    from ._store import Store

SECRET_BYTES = 32
"""Length of a generated secret."""

_INSERT = sa.text(
    "INSERT INTO server_secrets (name, value, created_at) VALUES (:name, :value, :now) "
    "ON CONFLICT DO NOTHING"
)
_SELECT = sa.text("SELECT value FROM server_secrets WHERE name = :name")


def _decode(value: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(value.encode("ascii") + b"=" * (-len(value) % 4))
    except (binascii.Error, UnicodeEncodeError, ValueError):
        # Put there by hand in another form: use the text itself as the key.
        return value.encode("utf-8")


async def get_or_create_secret(store: Store, name: str) -> bytes:
    """The secret called ``name``; made (32 random bytes) if this database has none yet.

    Race-safe across orchestrators sharing the database: all of them get the same value.
    """
    candidate = base64.urlsafe_b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")

    def go(conn: Connection) -> str:
        conn.execute(_INSERT, {"name": name, "value": candidate, "now": now_ms()})
        return str(conn.execute(_SELECT, {"name": name}).scalar_one())

    return _decode(await store.write(go))
