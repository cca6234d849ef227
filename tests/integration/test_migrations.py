"""Migrations: they must build exactly the schema of ``_tables.py``, once, and never change.

The schema comparison is structural (SQLAlchemy's inspector on the migrated
database against the ``metadata`` objects), not a comparison of DDL text. Every
test on a database runs on SQLite and on PostgreSQL (``empty_db_url``, from
tests/conftest.py: a fresh database nothing has migrated yet).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from importlib import resources
from typing import Any

import pytest
import sqlalchemy as sa

from polos.protocol import DEFAULT_PROJECT_ID, WorkflowSpec
from polos.storage import ClaimOp, metadata, migrate, migrations, normalize_url, open_store
from polos.storage import _tables as tables

# sha256 of every released migration file. Released migrations must never change:
# databases in the field already ran them. A schema change is a NEW file; add its
# hash here when it is released.
RELEASED: dict[str, dict[str, str]] = {
    "sqlite": {
        "0001_init.sql": "99148684e6c27c9c44350010710fc65ff63265969a08a474d1bc9a6010035a99",
        "0002_waits_events.sql": "68b85836c36deb3398a7f00c430b26807b02541516bf555cd452d256b048334e",
        "0003_flow_control.sql": "e92e7d84690de33c8d13fa7ad48186448066a9f812585bad7bf91781018728ac",
        "0004_agent_sessions.sql": "c53f284d87c33b2c7c5d474dc5e7e34eec00f4f7389f1a0cc3eca41f00a58032",
        "0005_observability.sql": "ffdf3f3980e92be3a265636dd0a80fa0989cb72daecc3270f7313a17474c879f",
        "0006_security.sql": "b1158b9787d29ad194f2233a0a036c0b9d76dfa1cd615a69638b94958fc598a3",
        "0007_initial_state.sql": "90bb91986938744bdefbd817406842fdb280c5fc288fb43076c7a47ab8db48ec",
    },
    "postgres": {
        "0001_init.sql": "30418b4231b7d1f95a060a5c37093ef76a397590da3771ea80d3246494e770ab",
        "0002_waits_events.sql": "2dc80fad3d05726e1e516f241a578a8138f41773cd1bda0459bf6084abc21c63",
        "0003_flow_control.sql": "5dad4e0e373576600c1362639847909cf94d0b945bb43a34da312d89587ca522",
        "0004_agent_sessions.sql": "dac76ff81fd6afa55fe4e6dd4a548b40ef05de19fa740e48c8ee148c627f2f08",
        "0005_observability.sql": "ffdf3f3980e92be3a265636dd0a80fa0989cb72daecc3270f7313a17474c879f",
        "0006_security.sql": "b1158b9787d29ad194f2233a0a036c0b9d76dfa1cd615a69638b94958fc598a3",
        "0007_initial_state.sql": "193d0ce38bc413dd379155888088751ae844ba80ede715020e723b408556a38f",
    },
}

# ---------------------------------------------------------------------------- fixtures


@pytest.fixture
def engine(empty_db_url: str) -> Iterator[sa.Engine]:
    """A plain engine on the (empty) test database, to inspect it independently of the store."""
    eng = sa.create_engine(normalize_url(empty_db_url))
    try:
        yield eng
    finally:
        eng.dispose()


async def migrate_with_store(db_url: str) -> None:
    store = await open_store(db_url)
    await store.close()


# ---------------------------------------------------------------------------- schema description


# PostgreSQL reflects literals with their casts: '[]'::text, status = 'queued'::text.
_PG_CAST = re.compile(r"::[a-z][a-z ]*(?:\[\])?$")
_PG_LITERAL_CAST = re.compile(r"('(?:[^']|'')*')::[a-z][a-z ]*[a-z](?:\[\])?")


def _norm_sql(text: str | None) -> str | None:
    """Whitespace-, quote- and parenthesis-insensitive form of a SQL fragment."""
    if text is None:
        return None
    text = re.sub(r"\s+", " ", text).strip()
    # PostgreSQL reflects ``a AND b`` as ``((a) AND (b))``: compare without any parentheses.
    text = text.replace("(", "").replace(")", "")
    text = _PG_LITERAL_CAST.sub(r"\1", text)
    return text.replace('"', "")


def _norm_default(text: str | None) -> str | None:
    if text is None:
        return None
    text = _norm_sql(text) or ""
    text = _PG_CAST.sub("", text)
    text = text.strip("'")
    # Booleans: SQLite stores false as 0, PostgreSQL as false.
    return {"false": "0", "true": "1"}.get(text.lower(), text)


def _expected_default(column: sa.Column[Any], sa_dialect: sa.Dialect) -> str | None:
    default = column.server_default
    if default is None:
        return None
    arg = default.arg  # type: ignore[attr-defined]
    text = arg if isinstance(arg, str) else str(arg.compile(dialect=sa_dialect))
    return _norm_default(text)


def expected_schema(sa_dialect: sa.Dialect) -> dict[str, Any]:
    """What ``_tables.metadata`` declares, in a comparable shape."""
    schema: dict[str, Any] = {}
    for table in metadata.sorted_tables:
        schema[table.name] = {
            "columns": {
                c.name: {
                    "type": c.type.compile(dialect=sa_dialect),
                    "nullable": c.nullable,
                    "default": _expected_default(c, sa_dialect),
                }
                for c in table.columns
            },
            "primary_key": [c.name for c in table.primary_key.columns],
            "foreign_keys": sorted(
                (
                    tuple(fk.parent.name for fk in fkc.elements),
                    fkc.referred_table.name,
                    tuple(fk.column.name for fk in fkc.elements),
                    (fkc.ondelete or "").upper() or None,
                )
                for fkc in table.foreign_key_constraints
            ),
            "uniques": sorted(
                tuple(c.name for c in uc.columns)
                for uc in table.constraints
                if isinstance(uc, sa.UniqueConstraint)
            ),
            "indexes": {
                ix.name: {
                    "columns": [c.name for c in ix.columns],
                    "unique": bool(ix.unique),
                    "where": _norm_sql(
                        str(w)
                        if (w := ix.dialect_options[sa_dialect.name].get("where")) is not None
                        else None
                    ),
                }
                for ix in table.indexes
            },
        }
    return schema


def actual_schema(engine: sa.Engine) -> dict[str, Any]:
    """What the migrated database holds, reflected."""
    inspector = sa.inspect(engine)
    where_key = f"{engine.dialect.name}_where"
    schema: dict[str, Any] = {}
    for name in inspector.get_table_names():
        schema[name] = {
            "columns": {
                c["name"]: {
                    "type": c["type"].compile(dialect=engine.dialect),
                    "nullable": bool(c["nullable"]),
                    "default": _norm_default(c["default"]),
                }
                for c in inspector.get_columns(name)
            },
            "primary_key": list(inspector.get_pk_constraint(name)["constrained_columns"]),
            "foreign_keys": sorted(
                (
                    tuple(fk["constrained_columns"]),
                    fk["referred_table"],
                    tuple(fk["referred_columns"]),
                    (fk.get("options", {}).get("ondelete") or "").upper() or None,
                )
                for fk in inspector.get_foreign_keys(name)
            ),
            "uniques": sorted(
                tuple(uc["column_names"]) for uc in inspector.get_unique_constraints(name)
            ),
            "indexes": {
                ix["name"]: {
                    "columns": list(ix["column_names"]),
                    "unique": bool(ix["unique"]),
                    "where": _norm_sql(
                        str(w)
                        if (w := ix.get("dialect_options", {}).get(where_key)) is not None
                        else None
                    ),
                }
                for ix in inspector.get_indexes(name)
                # PostgreSQL also lists the index behind each UNIQUE constraint.
                if not ix.get("duplicates_constraint")
            },
        }
    return schema


# ---------------------------------------------------------------------------- tests


async def test_migrate__fresh_database_matches_tables_metadata(
    empty_db_url: str, engine: sa.Engine
) -> None:
    await migrate_with_store(empty_db_url)
    expected = expected_schema(engine.dialect)
    actual = actual_schema(engine)

    assert sorted(actual) == sorted(expected), "tables differ"
    for name in expected:
        exp, act = expected[name], actual[name]
        assert list(act["columns"]) == list(exp["columns"]), f"{name}: columns or their order"
        for column, spec in exp["columns"].items():
            assert act["columns"][column] == spec, f"{name}.{column}"
        assert act["primary_key"] == exp["primary_key"], f"{name}: primary key"
        assert act["foreign_keys"] == exp["foreign_keys"], f"{name}: foreign keys"
        assert act["uniques"] == exp["uniques"], f"{name}: unique constraints"
        assert act["indexes"] == exp["indexes"], f"{name}: indexes"


def test_schema_description__sees_partial_index_predicates_and_uniqueness(
    engine: sa.Engine,
) -> None:
    # Guards the comparison itself: if the expected side lost the details the
    # migration test relies on, that test would pass vacuously.
    indexes = expected_schema(engine.dialect)["executions"]["indexes"]
    assert indexes["ix_executions_queued"]["where"] == "status = 'queued'"
    assert indexes["ix_executions_running_worker"]["where"] == "status = 'running'"
    assert indexes["ux_executions_idempotency"]["unique"] is True
    assert indexes["ix_executions_project_created"] == {
        "columns": ["project_id", "created_at", "id"],
        "unique": False,
        "where": None,
    }
    columns = expected_schema(engine.dialect)["executions"]["columns"]
    assert columns["code_changed"] == {"type": "BOOLEAN", "nullable": False, "default": "0"}
    assert columns["result"]["nullable"] is True


def test_schema_description__detects_a_drifted_database(engine: sa.Engine) -> None:
    # A database built from a slightly different definition must not compare equal.
    drifted = sa.MetaData()
    for table in metadata.sorted_tables:
        table.to_metadata(drifted)
    executions = drifted.tables["executions"]
    for ix in list(executions.indexes):
        if ix.name == "ix_executions_queued":
            executions.indexes.remove(ix)
    sa.Index(
        "ix_executions_queued",
        executions.c.project_id,
        executions.c.priority,
        executions.c.available_at,
        sqlite_where=sa.text("status = 'running'"),
        postgresql_where=sa.text("status = 'running'"),
    )
    drifted.create_all(engine)
    actual = actual_schema(engine)
    expected = expected_schema(engine.dialect)
    assert actual["executions"]["indexes"] != expected["executions"]["indexes"]
    assert actual["steps"] == expected["steps"]


async def test_migrate__twice_is_a_no_op(empty_db_url: str, engine: sa.Engine) -> None:
    await migrate_with_store(empty_db_url)
    schema = actual_schema(engine)
    with engine.connect() as conn:
        before = conn.execute(sa.select(tables.schema_migrations)).all()

    await migrate_with_store(empty_db_url)
    assert migrate(engine, engine_dialect(engine)) == []

    assert actual_schema(engine) == schema
    with engine.connect() as conn:
        after = conn.execute(sa.select(tables.schema_migrations)).all()
    assert after == before


def test_migrate__fresh_database_applies_every_version_once(engine: sa.Engine) -> None:
    shipped = migrations(engine_dialect(engine))
    assert migrate(engine, engine_dialect(engine)) == [m.version for m in shipped]
    assert migrate(engine, engine_dialect(engine)) == []


async def test_schema_migrations__records_every_shipped_version(
    empty_db_url: str, engine: sa.Engine
) -> None:
    await migrate_with_store(empty_db_url)
    shipped = migrations(engine_dialect(engine))
    assert shipped, "no migrations shipped"
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(tables.schema_migrations).order_by(tables.schema_migrations.c.version)
        ).all()
    assert [(r.version, r.name) for r in rows] == [(m.version, m.name) for m in shipped]
    assert all(r.applied_at > 0 for r in rows)


def _migrate_up_to(engine: sa.Engine, version: int) -> None:
    """Apply the shipped migrations up to ``version`` only, as an older release did."""
    with engine.begin() as conn:
        tables.schema_migrations.create(conn, checkfirst=True)
    for migration in migrations(engine_dialect(engine)):
        if migration.version > version:
            break
        with engine.begin() as conn:
            for statement in migration.statements():
                conn.exec_driver_sql(statement)
            conn.execute(
                tables.schema_migrations.insert().values(
                    version=migration.version, name=migration.name, applied_at=1
                )
            )


async def test_migrate__0007_executions_from_before_replay_from_their_latest_state(
    empty_db_url: str, engine: sa.Engine
) -> None:
    # 0007 keeps each execution's initial state for its replays. A row written before it
    # (or by an older orchestrator during a rolling upgrade) has none recorded: its claims
    # hand the worker the latest state, as they did before.
    _migrate_up_to(engine, 6)
    with engine.begin() as conn:
        conn.execute(tables.projects.insert().values(id=DEFAULT_PROJECT_ID, name="p", created_at=1))
        conn.exec_driver_sql(
            "INSERT INTO executions (id, project_id, workflow_id, status, payload, state, "
            "attempt, epoch, retry, max_recovery_attempts, created_at, updated_at, available_at) "
            f"VALUES ('old', '{DEFAULT_PROJECT_ID}', 'wf', 'queued', 'null', '{{\"done\": 3}}', "
            "1, 1, '{}', 20, 1, 1, 1)"
        )

    store = await open_store(empty_db_url)  # migrates to the latest version
    try:
        with engine.connect() as conn:
            row = conn.execute(
                sa.select(
                    tables.executions.c.initial_state, tables.executions.c.initial_state_recorded
                ).where(tables.executions.c.id == "old")
            ).one()
        assert (row.initial_state, bool(row.initial_state_recorded)) == (None, False)
        await store.register_worker(
            project_id=DEFAULT_PROJECT_ID,
            worker_id="w1",
            name="w1",
            hostname="test-host",
            pid=1,
            orchestrator_id="orch-1",
            max_concurrent=10,
            workflows=[WorkflowSpec(id="wf", fingerprint="fp")],
            active={},
            lease_ms=60_000,
        )
        outcome = await store.apply_batch([ClaimOp(DEFAULT_PROJECT_ID, "w1", 10)])
        [tasks] = outcome.results
        assert isinstance(tasks, list)
        [task] = tasks
        assert (task.execution_id, task.epoch) == ("old", 2)
        assert (task.has_state, task.state) == (True, {"done": 3})
    finally:
        await store.close()


def engine_dialect(engine: sa.Engine) -> str:
    return {"sqlite": "sqlite", "postgresql": "postgres"}[engine.dialect.name]


# ---------------------------------------------------------------------------- manifest


def _shipped_files(dialect: str) -> dict[str, bytes]:
    folder = resources.files("polos.storage") / "migrations" / dialect
    return {
        entry.name: entry.read_bytes() for entry in folder.iterdir() if entry.name.endswith(".sql")
    }


@pytest.mark.parametrize("dialect_name", sorted(RELEASED))
def test_migration_manifest__released_files_are_unchanged(dialect_name: str) -> None:
    files = _shipped_files(dialect_name)
    for name, digest in RELEASED[dialect_name].items():
        assert name in files, f"released migration {dialect_name}/{name} was deleted or renamed"
        actual = hashlib.sha256(files[name]).hexdigest()
        assert actual == digest, (
            f"released migration {dialect_name}/{name} was edited; "
            "never change a released migration, add a new one instead"
        )


@pytest.mark.parametrize("dialect_name", sorted(RELEASED))
def test_migration_manifest__every_shipped_file_is_pinned(dialect_name: str) -> None:
    files = _shipped_files(dialect_name)
    unpinned = sorted(set(files) - set(RELEASED[dialect_name]))
    assert not unpinned, (
        f"migrations {unpinned} are not in RELEASED[{dialect_name!r}]: "
        "add their sha256 to this test when releasing them"
    )
    # Every file must also be picked up by the migration runner (a misnamed file is skipped).
    assert sorted(f"{m.version:04d}_{m.name}.sql" for m in migrations(dialect_name)) == sorted(
        files
    )


def test_migration_manifest__dialects_ship_the_same_versions() -> None:
    sqlite = [(m.version, m.name) for m in migrations("sqlite")]
    postgres = [(m.version, m.name) for m in migrations("postgres")]
    assert sqlite == postgres
    assert [v for v, _ in sqlite] == list(range(1, len(sqlite) + 1)), "versions have gaps"
