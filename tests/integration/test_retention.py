"""Retention: pruning old finished executions (steps, waits) and events, on both stores.

The storage tests write rows directly (with chosen ages), prune, and check exactly what
went and what stayed. The end-to-end tests run a real orchestrator with a retention of
about a second and real workers: every execution started under load completes with
its result while finished ones disappear; and the SQLite backup procedure of
docs/retention-and-backups.md (``VACUUM INTO`` while running) gives a database a new
orchestrator serves.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from polos import PolosClient
from polos.errors import ConfigurationError
from polos.orchestrator._retention import RetentionSettings, prune_round
from polos.protocol import DEFAULT_PROJECT_ID, now_ms
from polos.storage import Store, count_prunable, open_store, prune_events, prune_executions
from polos.storage import _tables as t
from polos.testing import ServerProcess
from tests.integration.conftest import STEPS_WORKER, Servers, Workers, wait_until

P = DEFAULT_PROJECT_ID
DAY = 86_400_000
WAITS_WORKER = Path(__file__).parent / "workers" / "waits_worker.py"


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    """A migrated store with the default project, closed after the test."""
    s = await open_store(db_url)
    try:
        await s.ensure_project(P, "Default project")
        yield s
    finally:
        await s.close()


# ---------------------------------------------------------------------------- rows


async def add_execution(
    store: Store,
    *,
    status: str = "completed",
    finished_ago_ms: int | None = 10 * DAY,
    created_ago_ms: int = 11 * DAY,
    parent: str | None = None,
    root: str | None = None,
    steps: int = 2,
    waits: int = 0,
) -> str:
    """Insert an execution (its root is itself unless given) with ``steps`` step rows."""
    now = now_ms()
    eid = str(uuid.uuid4())
    finished = status in ("completed", "failed", "cancelled")
    completed_at = now - finished_ago_ms if finished and finished_ago_ms is not None else None

    def go(conn: sa.Connection) -> None:
        conn.execute(
            t.executions.insert().values(
                id=eid,
                project_id=P,
                workflow_id="wf",
                status=status,
                result="1" if status == "completed" else None,
                retry="{}",
                max_recovery_attempts=3,
                parent_id=parent,
                root_id=root or eid,
                created_at=now - created_ago_ms,
                updated_at=now,
                available_at=now - created_ago_ms,
                completed_at=completed_at,
            )
        )
        for i in range(steps):
            conn.execute(
                t.steps.insert().values(
                    execution_id=eid,
                    key=f"s{i}",
                    seq=i,
                    kind="run",
                    output="1",
                    started_at=now - created_ago_ms,
                    completed_at=now - created_ago_ms,
                )
            )
        for i in range(waits):
            conn.execute(
                t.waits.insert().values(
                    execution_id=eid,
                    step_key=f"w{i}",
                    project_id=P,
                    workflow_id="wf",
                    root_id=root or eid,
                    kind="suspend",
                    step_kind="suspend",
                    seq=100 + i,
                    started_at=now - created_ago_ms,
                    created_at=now - created_ago_ms,
                )
            )

    await store.write(go)
    return eid


async def add_events(store: Store, topic: str, seqs: range, *, ago_ms: int = 10 * DAY) -> None:
    now = now_ms()

    def go(conn: sa.Connection) -> None:
        for seq in seqs:
            conn.execute(
                t.events.insert().values(
                    project_id=P,
                    topic=topic,
                    seq=seq,
                    id=str(uuid.uuid4()),
                    data="{}",
                    created_at=now - ago_ms,
                )
            )

    await store.write(go)


async def add_event_wait(store: Store, topic: str, after_seq: int) -> str:
    """A waiting execution (created long ago) parked on ``topic`` after ``after_seq``."""
    eid = await add_execution(store, status="waiting", finished_ago_ms=None, steps=1)
    now = now_ms()

    def go(conn: sa.Connection) -> None:
        conn.execute(
            t.waits.insert().values(
                execution_id=eid,
                step_key="ev",
                project_id=P,
                workflow_id="wf",
                root_id=eid,
                kind="event",
                step_kind="wait_event",
                seq=1,
                topic=topic,
                after_seq=after_seq,
                started_at=now - 10 * DAY,
                created_at=now - 10 * DAY,
            )
        )

    await store.write(go)
    return eid


async def add_trigger(store: Store, topic: str, cursor: int) -> None:
    def go(conn: sa.Connection) -> None:
        conn.execute(
            t.triggers.insert().values(
                project_id=P,
                topic=topic,
                workflow_id="on_" + topic,
                cursor=cursor,
                batch_size=10,
                batch_timeout_ms=None,
                created_at=now_ms() - 10 * DAY,
            )
        )

    await store.write(go)


async def execution_ids(store: Store) -> set[str]:
    return set(await store.read(lambda c: c.scalars(sa.select(t.executions.c.id)).all()))


async def rows_of(store: Store, table: sa.Table, execution_id: str) -> int:
    return int(
        await store.read(
            lambda c: c.scalar(
                sa.select(sa.func.count()).where(table.c.execution_id == execution_id)
            )
        )
    )


async def event_seqs(store: Store, topic: str) -> list[int]:
    return sorted(
        await store.read(
            lambda c: c.scalars(sa.select(t.events.c.seq).where(t.events.c.topic == topic)).all()
        )
    )


def cutoff(days: float = 1) -> int:
    return now_ms() - round(days * DAY)


# ---------------------------------------------------------------------------- executions


async def test_prune__old_finished_trees_go_with_their_steps_and_waits(store: Store) -> None:
    root = await add_execution(store, steps=3)
    child = await add_execution(store, parent=root, root=root, finished_ago_ms=10 * DAY + 5)
    grandchild = await add_execution(store, parent=child, root=root, waits=1)
    failed = await add_execution(store, status="failed")
    cancelled = await add_execution(store, status="cancelled", steps=0, waits=2)

    done = await prune_executions(store, before=cutoff(), limit=100)

    assert done.selected == done.executions == 5
    assert done.steps == 3 + 2 + 2 + 2 + 0
    assert done.waits == 1 + 2
    assert await execution_ids(store) == set()
    for eid in (root, child, grandchild, failed, cancelled):
        assert await rows_of(store, t.steps, eid) == 0
        assert await rows_of(store, t.waits, eid) == 0
    again = await prune_executions(store, before=cutoff(), limit=100)
    assert (again.selected, again.executions, again.steps) == (0, 0, 0)


async def test_prune__keeps_recent_unfinished_and_the_trees_still_in_use(store: Store) -> None:
    gone = await add_execution(store)
    recent = await add_execution(store, finished_ago_ms=60_000)
    # Created long ago but not finished: never pruned, whatever their age.
    queued = await add_execution(store, status="queued", finished_ago_ms=None)
    running = await add_execution(store, status="running", finished_ago_ms=None)
    waiting = await add_execution(store, status="waiting", finished_ago_ms=None, waits=1)
    # A finished child of a running parent: the parent may replay and read it.
    parent = await add_execution(store, status="running", finished_ago_ms=None)
    child_of_running = await add_execution(store, parent=parent, root=parent)
    # ... of a waiting grandparent (the whole tree is checked, not only the parent).
    top = await add_execution(store, status="waiting", finished_ago_ms=None)
    middle = await add_execution(store, parent=top, root=top)
    leaf = await add_execution(store, parent=middle, root=top)
    # A finished tree whose root finished recently: kept until all of it is old.
    young_root = await add_execution(store, finished_ago_ms=60_000)
    old_child = await add_execution(store, parent=young_root, root=young_root)
    # A finished root whose child still runs (a fire-and-forget invoke): kept too.
    done_root = await add_execution(store)
    await add_execution(store, status="running", parent=done_root, root=done_root)

    done = await prune_executions(store, before=cutoff(), limit=100)

    assert done.executions == 1
    remaining = await execution_ids(store)
    assert gone not in remaining
    for kept in (
        recent,
        queued,
        running,
        waiting,
        parent,
        child_of_running,
        top,
        middle,
        leaf,
        young_root,
        old_child,
        done_root,
    ):
        assert kept in remaining
        assert await rows_of(store, t.steps, kept) == 2
    assert await rows_of(store, t.waits, waiting) == 1


async def test_prune__a_tree_goes_once_its_last_member_finished(store: Store) -> None:
    parent = await add_execution(store, status="running", finished_ago_ms=None)
    child = await add_execution(store, parent=parent, root=parent)
    assert (await prune_executions(store, before=cutoff(), limit=10)).executions == 0

    def finish(conn: sa.Connection) -> None:
        conn.execute(
            t.executions.update()
            .where(t.executions.c.id == parent)
            .values(status="completed", completed_at=now_ms() - 5 * DAY)
        )

    await store.write(finish)
    assert (await prune_executions(store, before=cutoff(), limit=10)).executions == 2
    assert {parent, child}.isdisjoint(await execution_ids(store))


async def test_prune__batches_are_bounded_and_resume_past_what_stays(store: Store) -> None:
    # The oldest finished rows are blocked (their root still runs); 25 prunable ones follow.
    blocker = await add_execution(store, status="running", finished_ago_ms=None)
    blocked = [
        await add_execution(store, parent=blocker, root=blocker, finished_ago_ms=20 * DAY)
        for _ in range(3)
    ]
    prunable = [await add_execution(store, finished_ago_ms=10 * DAY - i) for i in range(25)]

    sizes = []
    after = 0
    while True:
        done = await prune_executions(store, before=cutoff(), limit=10, after=after)
        assert done.executions <= 10 and done.steps <= 20
        sizes.append(done.executions)
        if done.selected < 10:
            break
        assert done.resume_after > after
        after = done.resume_after
    assert sizes == [10, 10, 5]
    remaining = await execution_ids(store)
    assert remaining == {blocker, *blocked}
    assert remaining.isdisjoint(prunable)

    # prune_round does the same in batches of RetentionSettings.batch.
    more = [await add_execution(store) for _ in range(7)]
    counts = await prune_round(store, RetentionSettings(executions_ms=DAY, batch=3), pause_s=0)
    assert (counts.executions, counts.steps, counts.batches) == (7, 14, 3)
    assert (await execution_ids(store)).isdisjoint(more)


async def test_prune__concurrent_pruners_share_the_work(store: Store, db_url: str) -> None:
    ids = {await add_execution(store, steps=1) for _ in range(60)}
    other = await open_store(db_url)
    try:
        settings = RetentionSettings(executions_ms=DAY, batch=7)
        a, b = await asyncio.gather(
            prune_round(store, settings, pause_s=0), prune_round(other, settings, pause_s=0)
        )
        # Each execution deleted exactly once; anything a pruner skipped (locked by the
        # other) is there for the next round.
        rest = await prune_round(store, settings, pause_s=0)
    finally:
        await other.close()
    assert a.executions + b.executions + rest.executions == len(ids)
    assert a.steps + b.steps + rest.steps == len(ids)
    assert (await execution_ids(store)) == set()


async def test_dry_run_counts_what_a_prune_deletes(store: Store) -> None:
    for _ in range(4):
        await add_execution(store, steps=3, waits=1)
    await add_execution(store, finished_ago_ms=1000)
    await add_events(store, "t", range(1, 6))
    found = await count_prunable(store, executions_before=cutoff(), events_before=cutoff())
    assert (found.executions, found.steps, found.waits, found.events) == (4, 12, 4, 5)
    assert len(await execution_ids(store)) == 5  # counting deletes nothing
    counts = await prune_round(
        store, RetentionSettings(executions_ms=DAY, events_ms=DAY), pause_s=0
    )
    assert (counts.executions, counts.steps, counts.waits, counts.events) == (4, 12, 4, 5)


# ---------------------------------------------------------------------------- events


async def test_prune_events__keeps_recent_and_those_open_waits_or_triggers_need(
    store: Store,
) -> None:
    await add_events(store, "free", range(1, 8))  # nothing needs them
    await add_events(store, "free", range(8, 10), ago_ms=1000)  # recent
    await add_events(store, "waited", range(1, 11))
    await add_event_wait(store, "waited", after_seq=6)  # reads seq 7.. when it wakes
    await add_event_wait(store, "waited", after_seq=8)
    await add_events(store, "triggered", range(1, 11))
    await add_trigger(store, "triggered", cursor=4)  # a batch gathering seq 5..
    await add_events(store, "consumed", range(1, 4))
    await add_trigger(store, "consumed", cursor=3)  # every event turned into a run

    done = await prune_events(store, before=cutoff(), limit=100)

    assert done.events == 7 + 6 + 4 + 3
    assert await event_seqs(store, "free") == [8, 9]
    assert await event_seqs(store, "waited") == [7, 8, 9, 10]
    assert await event_seqs(store, "triggered") == [5, 6, 7, 8, 9, 10]
    assert await event_seqs(store, "consumed") == []


async def test_prune_events__bounded_batches(store: Store) -> None:
    await add_events(store, "many", range(1, 24))
    sizes = []
    after = 0
    while True:
        done = await prune_events(store, before=cutoff(), limit=10, after=after)
        sizes.append(done.events)
        if done.selected < 10:
            break
        after = done.resume_after
    assert sizes == [10, 10, 3]
    assert await event_seqs(store, "many") == []


# ---------------------------------------------------------------------------- settings and CLI


def test_settings__from_env_and_validation() -> None:
    assert RetentionSettings.from_env({}) is None
    s = RetentionSettings.from_env({"POLOS_RETENTION_DAYS": "30"})
    assert s is not None
    assert (s.executions_ms, s.events_ms, s.batch, s.interval_s) == (30 * DAY, 30 * DAY, 500, 60)
    s = RetentionSettings.from_env(
        {
            "POLOS_RETENTION_DAYS": "0.5",
            "POLOS_EVENT_RETENTION_DAYS": "2",
            "POLOS_RETENTION_BATCH": "50",
            "POLOS_RETENTION_INTERVAL_SECONDS": "0.25",
        }
    )
    assert s == RetentionSettings(
        executions_ms=DAY // 2, events_ms=2 * DAY, batch=50, interval_s=0.25
    )
    only_events = RetentionSettings.from_env({"POLOS_EVENT_RETENTION_DAYS": "7"})
    assert only_events is not None and only_events.executions_ms is None
    for env, message in [
        ({"POLOS_RETENTION_DAYS": "soon"}, "must be a number"),
        ({"POLOS_RETENTION_DAYS": "0"}, "positive number of days"),
        ({"POLOS_RETENTION_DAYS": "-3"}, "positive number of days"),
        ({"POLOS_RETENTION_DAYS": "inf"}, "finite"),
        ({"POLOS_EVENT_RETENTION_DAYS": "nan"}, "finite"),
        ({"POLOS_RETENTION_DAYS": "1", "POLOS_RETENTION_BATCH": "0"}, "1..100000"),
        ({"POLOS_RETENTION_DAYS": "1", "POLOS_RETENTION_BATCH": "1.5"}, "whole number"),
        ({"POLOS_RETENTION_DAYS": "1", "POLOS_RETENTION_INTERVAL_SECONDS": "0"}, "positive"),
    ]:
        with pytest.raises(ConfigurationError, match=message):
            RetentionSettings.from_env(env)


def polos_server(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("POLOS_")}
    clean.update({"COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb", **(env or {})})
    return subprocess.run(
        [sys.executable, "-m", "polos.cli.server", *args],
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_cli_prune__dry_run_then_prune(store: Store, db_url: str) -> None:
    for _ in range(3):
        await add_execution(store, steps=2)
    kept = await add_execution(store, finished_ago_ms=1000)
    await add_events(store, "t", range(1, 5))

    dry = await asyncio.to_thread(
        polos_server, "prune", "--database-url", db_url, "--days", "1", "--dry-run"
    )
    assert dry.returncode == 0, dry.stderr
    assert "would prune" in dry.stdout
    assert "executions : 3" in dry.stdout and "steps      : 6" in dry.stdout
    assert "events     : 4" in dry.stdout
    assert len(await execution_ids(store)) == 4

    done = await asyncio.to_thread(
        polos_server, "prune", "--database-url", db_url, env={"POLOS_RETENTION_DAYS": "1"}
    )
    assert done.returncode == 0, done.stderr
    assert "executions : 3" in done.stdout and "events     : 4" in done.stdout
    assert await execution_ids(store) == {kept}


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (("--days", "-1"), {}, "--days must be a positive number of days"),
        ((), {}, "nothing to prune"),
        ((), {"POLOS_RETENTION_DAYS": "a week"}, "POLOS_RETENTION_DAYS must be a number"),
        (("--days", "1"), {"POLOS_RETENTION_BATCH": "x"}, "POLOS_RETENTION_BATCH"),
    ],
)
def test_cli__bad_retention_settings_are_one_clear_line(
    tmp_path: Path, args: tuple[str, ...], env: dict[str, str], message: str
) -> None:
    # In process (click's runner): the message and the exit code are the CLI's own; the
    # real-process check of a bad setting is the `start` test below.
    from click.testing import CliRunner

    from polos.cli.server import main

    url = f"sqlite:///{tmp_path / 'p.db'}"
    clean = {k: None for k in os.environ if k.startswith("POLOS_")}
    done = CliRunner().invoke(
        main, ["prune", "--database-url", url, *args], env={**clean, "COLUMNS": "200", **env}
    )
    assert done.exit_code != 0
    assert message in " ".join(done.output.split())
    assert done.exception is None or isinstance(done.exception, SystemExit), done.exception


def test_cli__start_refuses_a_bad_retention_setting_in_one_line(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    started = polos_server(
        "start", "--database-url", url, "--port", "1", env={"POLOS_RETENTION_DAYS": "-2"}
    )
    assert started.returncode != 0
    assert "POLOS_RETENTION_DAYS must be a positive number" in " ".join(started.stderr.split())
    assert "Traceback" not in started.stderr


# ---------------------------------------------------------------------------- end to end

RETENTION_S = 1.0


def server_with(servers: Servers, env: dict[str, str], db: str = "polos.db") -> ServerProcess:
    """An orchestrator with extra environment, stopped (and its database dropped) at teardown."""
    server = ServerProcess(
        servers.database_url(db),
        env=env,
        log_path=servers.tmp_path / "logs" / f"server-retention-{len(servers.started)}.log",
    )
    servers.started.append(server)
    return server.start()


def retention_env(seconds: float = RETENTION_S) -> dict[str, str]:
    return {
        "POLOS_RETENTION_DAYS": repr(seconds / 86_400),
        "POLOS_RETENTION_INTERVAL_SECONDS": "0.2",
        "POLOS_RETENTION_BATCH": "5",  # small: many batches under load
    }


def status_code(api_url: str, execution_id: str) -> int:
    return httpx.get(f"{api_url}/api/v1/executions/{execution_id}", timeout=5).status_code


async def waiting(client: PolosClient, execution_id: str) -> None:
    async def parked() -> bool:
        return (await client.get_execution(execution_id)).status == "waiting"

    deadline = time.monotonic() + 20
    while not await parked():
        assert time.monotonic() < deadline, f"{execution_id} never parked"
        await asyncio.sleep(0.05)


async def results_of(handles: list[Any]) -> list[asyncio.Task[Any]]:
    tasks = [asyncio.create_task(h.result(90)) for h in handles]
    await asyncio.sleep(0.05)  # their waits start (and share one long poll) now
    return tasks


async def test_pruning_under_load_loses_no_running_execution(
    make_server: Servers, start_worker: Workers
) -> None:
    server = server_with(make_server, retention_env())
    start_worker(STEPS_WORKER, api_url=server.url)
    start_worker(WAITS_WORKER, api_url=server.url, name="waits")
    async with PolosClient(server.url) as client:
        # Finished early: gone a second after they finished.
        early = [
            await client.invoke("five_steps", {"count": 2, "sleep": 0.01, "tag": f"early{i}"})
            for i in range(10)
        ]
        assert [r["tag"] for r in await asyncio.gather(*(h.result(30) for h in early))] == [
            f"early{i}" for i in range(10)
        ]
        # Long-lived work, all of it older than the retention before it finishes: parked
        # executions (a suspend, an event wait), a parent waiting on a sleeping child.
        approvals = [await client.invoke("approve", {}) for _ in range(3)]
        waiters = [await client.invoke("event_waiter", {"topic": "retention/t"}) for _ in range(2)]
        parents = [
            await client.invoke("call_child", {"workflow": "sleeper", "payload": {"seconds": 2.5}})
            for _ in range(2)
        ]
        # Wait for results from the start: a result asked for later than the retention
        # after the execution finished is gone (that is the point). One shared long poll
        # per group that finishes together (a poll answers when all its ids finished).
        parked_results = [
            *await results_of(parents),
            *await results_of(approvals),
            *await results_of(waiters),
        ]
        for handle in approvals + waiters:
            await waiting(client, handle.id)

        # Load: waves of workflows whose steps take longer than the retention, while
        # finished ones keep being pruned under them.
        expected: dict[str, dict[str, Any]] = {}
        results: list[asyncio.Task[Any]] = []
        ids: list[str] = []
        for wave in range(4):
            for i in range(15):
                tag = f"w{wave}-{i}"
                count = 2 + (i % 5)
                payload = {"count": count, "sleep": 0.4, "tag": tag}
                handle = await client.invoke("five_steps", payload)
                values = [10 * k for k in range(1, count + 1)]
                expected[handle.id] = {"tag": tag, "values": values, "total": sum(values)}
                ids.append(handle.id)
                results.append(asyncio.create_task(handle.result(60)))
            await asyncio.sleep(0.5)

        # Meanwhile, the early ones disappear (steps and all); the parked ones stay.
        await asyncio.to_thread(
            wait_until,
            lambda: all(status_code(server.url, h.id) == 404 for h in early),
            30,
            0.1,
            "the early executions to be pruned",
        )
        await asyncio.sleep(2 * RETENTION_S)
        for handle in approvals + waiters:
            assert (await client.get_execution(handle.id)).status == "waiting"

        # Every execution started under load completes with its result: none lost.
        got = await asyncio.gather(*results)
        assert dict(zip(ids, got, strict=True)) == expected
        for i, handle in enumerate(approvals):
            await client.resume(handle.id, "approval", {"i": i})
        published = await client.events.publish("retention/t", {"late": True})
        parked_got = await asyncio.gather(*parked_results)
        for result in parked_got[:2]:
            assert result["type"] == "dict" and "woke" in result["result"]
        assert parked_got[2:5] == [{"outcome": "resumed", "data": {"i": i}} for i in range(3)]
        event = {"outcome": "event", "seq": published.seq, "data": {"late": True}}
        assert parked_got[5:] == [event, event]

        # And a little later, all of it is pruned in turn.
        everything = [h.id for h in early + approvals + waiters + parents] + ids
        await asyncio.to_thread(
            wait_until,
            lambda: all(status_code(server.url, i) == 404 for i in everything),
            30,
            0.2,
            "every finished execution to be pruned",
        )
        page = await client.list_executions(limit=100)
        assert page.items == []
    log = server.output()
    assert "retention pruned" in log
    assert "retention round failed" not in log


async def test_backup_while_running__restores_on_a_new_orchestrator(
    make_server: Servers, start_worker: Workers, tmp_path: Path
) -> None:
    # The procedures of docs/retention-and-backups.md, while workflows run: SQLite's
    # VACUUM INTO, PostgreSQL's pg_dump / pg_restore.
    server = make_server()
    start_worker(STEPS_WORKER, api_url=server.url)
    start_worker(WAITS_WORKER, api_url=server.url, name="waits")
    backup = tmp_path / "backup" / "polos-backup.db"
    backup.parent.mkdir()
    async with PolosClient(server.url) as client:
        done = [
            await client.invoke("five_steps", {"count": 2, "sleep": 0.01, "tag": f"d{i}"})
            for i in range(5)
        ]
        for handle in done:
            await handle.result(30)
        parked = await client.invoke("approve", {})
        await waiting(client, parked.id)
        busy = [
            await client.invoke("five_steps", {"count": 5, "sleep": 0.2, "tag": f"b{i}"})
            for i in range(5)
        ]
        # A consistent copy of the live database, taken while it is written.
        source = make_server.database_url()
        if make_server.store_kind == "sqlite":
            await asyncio.to_thread(_vacuum_into, source.removeprefix("sqlite:///"), backup)
        else:
            await asyncio.to_thread(_pg_dump, source, backup)
        for handle in busy:
            await handle.result(30)

    server.stop(timeout=5)
    if make_server.store_kind == "sqlite":
        assert sqlite3.connect(backup).execute("PRAGMA integrity_check").fetchone() == ("ok",)
        restored_url = f"sqlite:///{backup}"
    else:
        assert make_server.pg_server is not None
        restored_url = make_server.pg_server.create(migrated=False)
        make_server.databases["restored"] = restored_url  # dropped at teardown
        _pg_restore(backup, restored_url)
    restored = ServerProcess(restored_url, log_path=tmp_path / "logs" / "server-restored.log")
    make_server.started.append(restored)
    restored.start()
    start_worker(STEPS_WORKER, api_url=restored.url, name="restored-steps")
    start_worker(WAITS_WORKER, api_url=restored.url, name="restored-waits")
    async with PolosClient(restored.url) as client:
        for i, handle in enumerate(done):
            execution = await client.get_execution(handle.id)
            assert execution.status == "completed"
            assert execution.result["tag"] == f"d{i}"
        # The parked execution is still parked in the copy, and resumes there.
        assert (await client.get_execution(parked.id)).status == "waiting"
        await client.resume(parked.id, "approval", {"restored": True})
        assert await client.result(parked.id, 30) == {
            "outcome": "resumed",
            "data": {"restored": True},
        }
        # Those running at backup time resume from the copy's log and complete.
        for i, handle in enumerate(busy):
            result = await client.result(handle.id, 60)
            assert result["tag"] == f"b{i}" and result["total"] == 150


def _pg_dump(url: str, target: Path) -> None:
    subprocess.run(
        ["pg_dump", "--format=custom", f"--file={target}", url],
        check=True,
        capture_output=True,
        timeout=60,
    )


def _pg_restore(dump: Path, url: str) -> None:
    subprocess.run(
        ["pg_restore", "--no-owner", f"--dbname={url}", str(dump)],
        check=True,
        capture_output=True,
        timeout=60,
    )


def _vacuum_into(source: str, target: Path) -> None:
    conn = sqlite3.connect(source, timeout=30)
    try:
        conn.execute("VACUUM INTO ?", (str(target),))
    finally:
        conn.close()
