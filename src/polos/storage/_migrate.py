"""Numbered SQL migrations per dialect, applied in order, each in its own transaction.

Files live in ``migrations/<dialect>/NNNN_name.sql``. Released files are never
edited; a change is a new file. Statements are separated by ``;`` at line end.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from polos.protocol import now_ms

from . import _tables as t

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    """One migration file."""

    version: int
    name: str
    sql: str

    def statements(self) -> list[str]:
        """The file's statements, without comments."""
        lines = [ln for ln in self.sql.splitlines() if not ln.lstrip().startswith("--")]
        return [s.strip() for s in "\n".join(lines).split(";\n") if s.strip().rstrip(";")]


def migrations(dialect: str) -> list[Migration]:
    """All migrations shipped for ``dialect`` ('sqlite' or 'postgres'), in order."""
    folder = resources.files("polos.storage") / "migrations" / dialect
    found = []
    for entry in folder.iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2), entry.read_text()))
    return sorted(found, key=lambda m: m.version)


MIGRATION_LOCK = 0x706F6C6F73  # "polos": the advisory lock key that serialises migrators


def _applied(conn: Connection) -> set[int]:
    if conn.dialect.name == "postgresql":
        # Several orchestrators may start at once: one migrates, the others wait and
        # then find nothing left to do. Held until this transaction ends.
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
    t.schema_migrations.create(conn, checkfirst=True)
    return set(conn.scalars(sa.select(t.schema_migrations.c.version)).all())


def migrate(engine: Engine, dialect: str) -> list[int]:
    """Apply every pending migration (blocking). Returns the versions applied now."""
    done: list[int] = []
    with engine.begin() as conn:
        applied = _applied(conn)
    for migration in migrations(dialect):
        if migration.version in applied:
            continue
        with engine.begin() as conn:
            # Re-check inside the transaction: another process may have migrated meanwhile.
            if migration.version in _applied(conn):
                continue
            for statement in migration.statements():
                conn.exec_driver_sql(statement)
            conn.execute(
                t.schema_migrations.insert().values(
                    version=migration.version, name=migration.name, applied_at=now_ms()
                )
            )
        done.append(migration.version)
    return done
