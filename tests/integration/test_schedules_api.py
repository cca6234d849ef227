"""Schedules through real processes: the HTTP API, ``client.schedules``, ``polos schedules``,
the orchestrator's firing loop with a real worker, and two orchestrators on one PostgreSQL.

Slots are made due at once by moving a schedule's ``next_at`` back in the database
(the "orchestrator was down" situation), so no test waits for a wall-clock minute.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx
import psycopg
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from polos import ApiError, PolosClient, SchedulePayload
from polos.cli.main import main
from polos.protocol import now_ms
from polos.storage import _tables as tables
from polos.storage import open_store
from polos.testing import ServerProcess, WorkerProcess, wait_for_workers
from tests.integration.conftest import Servers, Workers, run_cli, side_lines, wait_until

pytestmark = pytest.mark.timeout(60)

SCHEDULE_WORKER = Path(__file__).parent / "workers" / "schedule_worker.py"
MINUTE = 60_000


async def rewind(db_url: str, ids: Sequence[str], next_at: int) -> None:
    """Pretend the orchestrators were down: move the schedules' next slot back."""
    store = await open_store(db_url, run_migrations=False)
    try:
        s = tables.schedules

        def go(conn: sa.Connection) -> None:
            conn.execute(s.update().where(s.c.id.in_(list(ids))).values(next_at=next_at))

        await store.write(go)
    finally:
        await store.close()


@pytest.fixture
def scheduled(make_server: Servers, start_worker: Workers) -> ServerProcess:
    """An orchestrator with ``workers/schedule_worker.py`` connected."""
    server = make_server()
    start_worker(SCHEDULE_WORKER, api_url=server.url)
    return server


async def test_client__create_list_update_pause_resume_trigger_delete_and_bad_input(
    scheduled: ServerProcess,
) -> None:
    async with PolosClient(scheduled.url) as client:
        s = await client.schedules.create(
            "tick", "0 9 * * 1-5", "Europe/Berlin", key="user-7", payload={"plan": "pro"}
        )
        assert (s.workflow_id, s.key, s.cron, s.timezone, s.status) == (
            "tick",
            "user-7",
            "0 9 * * 1-5",
            "Europe/Berlin",
            "active",
        )
        assert s.next_at is not None and s.next_at > now_ms()
        again = await client.schedules.create("tick", "0 10 * * *", "UTC", key="user-7")
        assert (again.id, again.cron, again.payload) == (s.id, "0 10 * * *", None)  # replaced

        listed = await client.schedules.list()
        assert {(x.workflow_id, x.key, x.source) for x in listed.items} == {
            ("tick", "user-7", "api"),
            ("nightly", "global", "decorator"),
        }
        assert [x.id for x in (await client.schedules.list("tick")).items] == [s.id]
        assert (await client.schedules.get(s.id)).cron == "0 10 * * *"

        changed = await client.schedules.update(
            s.id, timezone="America/New_York", catchup="all", payload={"plan": "pro"}
        )
        assert (changed.timezone, changed.catchup, changed.payload) == (
            "America/New_York",
            "all",
            {"plan": "pro"},
        )
        cleared = await client.schedules.update(s.id, payload=None)
        assert cleared.payload is None

        paused = await client.schedules.pause(s.id)
        assert (paused.status, paused.next_at) == ("paused", None)
        resumed = client.schedules.resume_sync(s.id)
        assert resumed.status == "active" and resumed.next_at is not None

        before = now_ms()
        started = await client.schedules.trigger(s.id, idempotency_key="once")
        repeated = await client.schedules.trigger(s.id, idempotency_key="once")
        assert started.created and not repeated.created
        assert repeated.execution_id == started.execution_id
        result = await client.handle(started.execution_id).result(timeout=20)
        slot = SchedulePayload.model_validate(
            {"timestamp": result["timestamp"], "schedule_id": s.id}
        ).timestamp
        assert before - 1000 <= slot.timestamp() * 1000 <= now_ms()
        assert (result["key"], result["manual"], result["schedule_id"]) == ("user-7", True, s.id)
        assert result["upcoming"] is not None
        assert (await client.schedules.get(s.id)).last_execution_id == started.execution_id

        deleted = client.schedules.delete_sync(s.id)
        assert deleted.id == s.id
        with pytest.raises(ApiError) as missing:
            await client.schedules.get(s.id)
        assert (missing.value.status_code, missing.value.code) == (404, "schedule_not_found")
        execution = await client.get_execution(started.execution_id)
        assert execution.status == "completed"  # a schedule's executions outlive it
    check_bad_input(scheduled)


def check_bad_input(scheduled: ServerProcess) -> None:
    """Bad input gets a clear 4xx whose message names the problem."""
    api = scheduled.url + "/api/v1/schedules"

    def post(body: object, path: str = "") -> httpx.Response:
        return httpx.post(api + path, json=body, timeout=10)

    cases = [
        (post({"workflow_id": "tick", "cron": "0 9 * *"}), 422, "exactly 5"),
        (post({"workflow_id": "tick", "cron": "61 * * * *"}), 422, "out of range"),
        (post({"workflow_id": "tick", "cron": "0 0 30 2 *"}), 422, "never fires"),
        (
            post({"workflow_id": "tick", "cron": "* * * * *", "timezone": "Mars/Base"}),
            422,
            "Mars/Base",
        ),
        (post({"workflow_id": "tick", "cron": "* * * * *", "overlap": "maybe"}), 422, "overlap"),
        (post({"workflow_id": "tick", "cron": "* * * * *", "extra": 1}), 422, "extra"),
        (post({"workflow_id": "nope", "cron": "* * * * *"}), 404, "'nope' is not registered"),
        (post({"workflow_id": "on_event", "cron": "* * * * *"}), 409, "either event-triggered"),
        (post({"workflow_id": "nightly", "cron": "* * * * *"}), 409, "declared with @workflow"),
        (post({}, "/missing/trigger"), 404, "'missing' does not exist"),
        (
            httpx.patch(api + "/missing", json={"cron": "* * * * *"}, timeout=10),
            404,
            "does not exist",
        ),
        (httpx.patch(api + "/missing", json={}, timeout=10), 422, "nothing to change"),
        (httpx.delete(api + "/missing", timeout=10), 404, "does not exist"),
        (httpx.get(api, params={"cursor": "!!"}, timeout=10), 400, "cursor"),
        (httpx.get(api, headers={"X-Polos-Project": "other"}, timeout=10), 404, "project"),
        (
            httpx.post(
                api, content=b"{not json", headers={"content-type": "application/json"}, timeout=10
            ),
            422,
            "",
        ),
    ]
    for response, status, needle in cases:
        assert response.status_code == status, response.text
        assert needle in response.json()["message"], response.text
        assert "Value error" not in response.json()["message"], response.text


async def test_loop__fires_missed_slots_once_each_through_a_real_worker(
    scheduled: ServerProcess, make_server: Servers, side_log: Path
) -> None:
    async with PolosClient(scheduled.url) as client:
        every = await client.schedules.create(
            "tick", "* * * * *", key="all", catchup="all", overlap="allow"
        )
        once = await client.schedules.create("tick", "* * * * *", key="once")
        minute = now_ms() // MINUTE * MINUTE
        await rewind(make_server.database_url(), [every.id, once.id], minute - 2 * MINUTE)

        def settled() -> bool:
            return all(
                (x.next_at or 0) > now_ms() for x in client.schedules.list_sync("tick").items
            )

        wait_until(settled, what="both schedules to fire")
        page = await client.list_executions(workflow_id="tick", limit=50)
        results = [await client.result(e.id, timeout=20) for e in page.items]

    by_key: dict[str, list[int]] = {}
    for r in results:
        slot = SchedulePayload.model_validate({"timestamp": r["timestamp"], "schedule_id": "x"})
        by_key.setdefault(r["key"], []).append(int(slot.timestamp.timestamp() * 1000))
    all_slots = sorted(by_key["all"])
    assert all_slots[:3] == [minute - 2 * MINUTE, minute - MINUTE, minute]
    assert all_slots == list(range(all_slots[0], all_slots[-1] + 1, MINUTE))  # no gap, no repeat
    # "once": the latest missed slot only (and, if a minute passed meanwhile, the next one)
    assert sorted(by_key["once"])[0] >= minute and len(by_key["once"]) <= 2
    logged = [line for line in side_lines(side_log) if line.startswith("tick ")]
    assert len(logged) == len(results)


@pytest.mark.parametrize("store_kind", ["sqlite"])
def test_cli__schedules_commands(scheduled: ServerProcess) -> None:
    url = scheduled.url
    # The real console script once (a one-line error, no traceback) ...
    bad = run_cli("schedules", "create", "tick", "0 9 * *", api_url=url)
    assert bad.returncode != 0 and "Traceback" not in bad.stdout + bad.stderr
    assert "exactly 5" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1

    # ... then in-process, which is quicker than a Python start-up per command.
    def cli(*args: str, ok: bool = True) -> str:
        done = CliRunner().invoke(
            main, ["--api-url", url, "schedules", *args], env={"COLUMNS": "300"}
        )
        assert (done.exit_code == 0) == ok, done.output
        assert done.exception is None or isinstance(done.exception, SystemExit), done.exception
        return done.output

    made = cli("create", "tick", "0 9 * * 1-5", "--tz", "Europe/Berlin", "-k", "u1",
               "--payload", '{"a": 1}', "--json")  # fmt: skip
    sid = json.loads(made)["id"]
    listed = cli("list")
    assert sid in listed and "0 9 * * 1-5" in listed and "nightly" in listed
    shown = cli("show", sid)
    assert "Europe/Berlin" in shown and "+0100" in shown and '{"a": 1}' in shown
    updated = cli("update", sid, "--cron", "30 8 * * *", "--overlap", "allow")
    assert "30 8 * * *" in updated and "allow" in updated
    assert "paused" in cli("pause", sid)
    assert "resumed" in cli("resume", sid)
    assert "started: execution" in cli("trigger", sid, "--idempotency-key", "k")
    assert "already started" in cli("trigger", sid, "--idempotency-key", "k")
    assert "deleted" in cli("delete", sid)
    assert "does not exist" in cli("show", sid, ok=False)
    assert "unknown timezone" in cli("create", "tick", "* * * * *", "--tz", "Nowhere", ok=False)


# ---------------------------------------------------------------------- two orchestrators


@pytest.fixture
def replicas(pg_url: str, tmp_path: Path) -> Iterator[list[ServerProcess]]:
    servers = [
        ServerProcess(pg_url, log_path=tmp_path / f"orchestrator-{n}.log").start()
        for n in ("a", "b")
    ]
    try:
        yield servers
    finally:
        for server in servers:
            server.kill()


@pytest.mark.postgres
async def test_replicas__two_orchestrators_start_one_execution_per_slot(
    replicas: list[ServerProcess], pg_url: str, tmp_path: Path
) -> None:
    a, b = replicas
    worker = WorkerProcess(SCHEDULE_WORKER, api_url=a.url, log_path=tmp_path / "worker.log")
    with worker:
        wait_for_workers(a.url, 1)
    # The worker is gone: the executions stay queued, the slots are what we count.
    async with PolosClient(a.url) as ca, PolosClient(b.url) as cb:
        made = [
            await (ca if i % 2 else cb).schedules.create(
                "tick", "* * * * *", key=f"user-{i}", catchup="all", overlap="allow"
            )
            for i in range(40)
        ]
    minute = now_ms() // MINUTE * MINUTE
    await rewind(pg_url, [s.id for s in made], minute - 9 * MINUTE)

    def counts() -> list[tuple[str, int, int, int]]:
        with psycopg.connect(pg_url) as conn:
            return conn.execute(
                "SELECT s.id, count(e.id), count(DISTINCT e.idempotency_key), "
                "count(DISTINCT e.payload::json->>'timestamp') FROM schedules s "
                "LEFT JOIN executions e ON e.schedule_id = s.id "
                "WHERE s.workflow_id = 'tick' AND s.next_at > %s GROUP BY s.id",
                (now_ms(),),
            ).fetchall()

    wait_until(lambda: len(counts()) == 40, timeout=30, interval=0.2, what="all to fire")
    time.sleep(1.5)  # both loops have looked again: nothing more may appear
    rows = counts()
    for _, total, keys, timestamps in rows:
        assert total == keys == timestamps
        assert total >= 10  # minute - 9 .. minute (one more if a minute passed meanwhile)
    assert sum(r[1] for r in rows) <= 40 * 11
    for log in (tmp_path / "orchestrator-a.log", tmp_path / "orchestrator-b.log"):
        assert "Traceback" not in log.read_text()
