"""API keys, projects and isolation over real orchestrator and worker processes.

The orchestrator here runs WITHOUT ``--local``: every route but ``/health`` needs a key.
Project B has a worker, an execution parked at an approval, an event, a schedule, a session
and a rate limit; project A's key must find none of them through any route (404, never
403, so that ids do not leak), and the isolation matrix below must name every route the
app serves: a new route fails the test until it is classified.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from polos import PolosClient
from polos.storage import open_store
from polos.testing._processes import ServerProcess
from tests.integration.conftest import WORKERS_DIR, Servers, Workers

WAITS_WORKER = WORKERS_DIR / "waits_worker.py"
API = "/api/v1"


@dataclass
class World:
    server: ServerProcess
    admin: str
    key_a: str
    key_b: str
    key_b_id: str
    execution_b: str
    schedule_b: str


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def _keys(url: str) -> tuple[str, str, str, str]:
    store = await open_store(url)
    try:
        await store.create_project("proj-a", "A")
        await store.create_project("proj-b", "B")
        _, admin = await store.create_api_key(None, "admin", role="admin")
        _, key_a = await store.create_api_key("proj-a", "a")
        info_b, key_b = await store.create_api_key("proj-b", "b")
        return admin, key_a, key_b, info_b.id
    finally:
        await store.close()


def _wait_worker(url: str, key: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        items = httpx.get(f"{url}{API}/workers", headers=bearer(key), timeout=5).json()["items"]
        if any(w["status"] == "connected" for w in items):
            return
        time.sleep(0.05)
    pytest.fail("the worker did not connect")


@pytest.fixture
async def world(
    make_server: Servers, start_worker: Workers, tmp_path: Path
) -> AsyncIterator[World]:
    url = make_server.database_url()
    admin, key_a, key_b, key_b_id = await _keys(url)
    server = ServerProcess(url, local=False, log_path=tmp_path / "logs" / "server-auth.log")
    make_server.started.append(server)
    server.start()
    start_worker(
        WAITS_WORKER, api_url=server.url, env={"POLOS_API_KEY": key_b}, wait=False, name="b"
    )
    _wait_worker(server.url, key_b)
    async with PolosClient(server.url, api_key=key_b) as b:
        handle = await b.invoke("approve", {})
        for _ in range(400):
            if (await b.get_execution(handle.id)).status == "waiting":
                break
            await asyncio.sleep(0.05)
        await b.events.publish("b-topic", {"secret": "b"})
        schedule = await b.schedules.create("sleeper", "0 3 * * *", key="nightly")
        await b.sessions.save("b-session", [{"role": "user", "content": "b"}], expected_version=0)
    async with httpx.AsyncClient(base_url=server.url, headers=bearer(key_b)) as http:
        (
            await http.put(f"{API}/rate-limits/b-limit", json={"limit": 5, "period_seconds": 60})
        ).raise_for_status()
    yield World(server, admin, key_a, key_b, key_b_id, handle.id, schedule.id)


# Every route, and what project A's key must get for project B's things. "404": the
# route names a B resource; "list": a listing that must not show B's things; "admin":
# admin keys only; "public": no key needed; "own": acts in A's own namespace.
MATRIX: dict[tuple[str, str], str] = {
    ("GET", "/health"): "public",
    ("POST", "/api/v1/workflows/{workflow_id}/executions"): "404",
    ("GET", "/api/v1/executions"): "list",
    ("GET", "/api/v1/executions/{execution_id}"): "404",
    ("GET", "/api/v1/executions/{execution_id}/result"): "404",
    ("POST", "/api/v1/executions/wait"): "404",
    ("POST", "/api/v1/executions/batch"): "404",
    ("GET", "/api/v1/executions/{execution_id}/steps"): "404",
    ("POST", "/api/v1/executions/{execution_id}/cancel"): "404",
    ("POST", "/api/v1/executions/{execution_id}/retry"): "404",
    ("GET", "/api/v1/workflows"): "list",
    ("GET", "/api/v1/workers"): "list",
    ("POST", "/api/v1/events"): "own",
    ("GET", "/api/v1/events"): "list",
    ("POST", "/api/v1/events/batch"): "own",
    ("GET", "/api/v1/events/stream"): "list",
    ("GET", "/api/v1/waits"): "list",
    ("POST", "/api/v1/executions/{execution_id}/resume"): "404",
    ("GET", "/api/v1/admin/projects"): "admin",
    ("POST", "/api/v1/admin/projects"): "admin",
    ("GET", "/api/v1/admin/keys"): "admin",
    ("POST", "/api/v1/admin/keys"): "admin",
    ("DELETE", "/api/v1/admin/keys/{key_id}"): "admin",
    ("GET", "/api/v1/queues"): "list",
    ("GET", "/api/v1/queues/{name}"): "404",
    ("PUT", "/api/v1/rate-limits/{name}"): "own",
    ("POST", "/api/v1/schedules"): "404",
    ("GET", "/api/v1/schedules"): "list",
    ("GET", "/api/v1/schedules/{schedule_id}"): "404",
    ("PATCH", "/api/v1/schedules/{schedule_id}"): "404",
    ("DELETE", "/api/v1/schedules/{schedule_id}"): "404",
    ("POST", "/api/v1/schedules/{schedule_id}/pause"): "404",
    ("POST", "/api/v1/schedules/{schedule_id}/resume"): "404",
    ("POST", "/api/v1/schedules/{schedule_id}/trigger"): "404",
    ("GET", "/api/v1/sessions"): "list",
    ("GET", "/api/v1/sessions/{session_id}"): "own",  # A's (empty) session of that name
    ("PUT", "/api/v1/sessions/{session_id}"): "own",
    ("DELETE", "/api/v1/sessions/{session_id}"): "404",
    ("GET", "/api/v1/executions/{execution_id}/trace"): "404",
    ("POST", "/api/v1/executions/{execution_id}/approval-links"): "404",
}


def _request(w: World, method: str, path: str) -> tuple[str, str, dict[str, Any], Any]:
    """A request naming project B's things for ``(method, path)``."""
    concrete = (
        path.replace("{execution_id}", w.execution_b)
        .replace("{workflow_id}", "approve")
        .replace("{schedule_id}", w.schedule_b)
        .replace("{session_id}", "b-session")
        .replace("{name}", "b-limit")
        .replace("{key_id}", w.key_b_id)
    )
    params: dict[str, Any] = {}
    body: Any = None
    if path.endswith("/result"):
        params = {"timeout": 0}
    elif path.endswith("/executions/wait"):
        body = {"ids": [w.execution_b], "timeout": 0}
    elif path.endswith("/executions/batch"):
        body = {"items": [{"workflow_id": "approve", "payload": {}}]}
    elif path.endswith("/resume"):
        body = {"step_key": "approval", "data": {"approved": True}}
    elif path.endswith(("/cancel", "/retry")):
        body = {}
    elif path.endswith("/approval-links"):
        body = {"step_key": "approval", "approver": "mallory@a"}
    elif path == "/api/v1/schedules" and method == "POST":
        body = {"workflow_id": "sleeper", "cron": "0 4 * * *"}
    elif "/schedules/" in path and method == "PATCH":
        body = {"cron": "0 5 * * *"}
    elif path.endswith("/workflows/{workflow_id}/executions"):
        body = {"payload": {}}
    elif path == "/api/v1/admin/projects":
        body = {"id": "proj-x"} if method == "POST" else None
    elif path == "/api/v1/admin/keys" and method == "POST":
        body = {"name": "x", "project_id": "proj-b"}
    elif path in ("/api/v1/events", "/api/v1/events/stream") and method == "GET":
        params = (
            {"topic": "b-topic", "after_seq": 0}
            if path.endswith("stream")
            else {"topic": "b-topic"}
        )
    elif path == "/api/v1/events":
        body = {"topic": "b-topic", "data": {"from": "a"}}
    elif path == "/api/v1/events/batch":
        body = {"items": [{"topic": "b-topic", "data": {"from": "a"}}]}
    elif path.startswith("/api/v1/rate-limits/"):
        body = {"limit": 1, "period_seconds": 60}
    elif path.startswith("/api/v1/sessions/") and method == "PUT":
        body = {"messages": [{"role": "user", "content": "a"}], "expected_version": 0}
    return method, concrete, params, body


async def test_isolation__project_a_key_finds_nothing_of_project_b_on_any_route(
    world: World,
) -> None:
    w = world
    async with httpx.AsyncClient(base_url=w.server.url, timeout=10) as http:
        spec = (await http.get(f"{API}/openapi.json")).json()
        served = {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops}
        assert served == set(MATRIX), (
            "classify every route in MATRIX (isolation): "
            f"new {sorted(served - set(MATRIX))}, gone {sorted(set(MATRIX) - served)}"
        )
        leaks = []
        for (method, path), kind in sorted(MATRIX.items()):
            method, concrete, params, body = _request(w, method, path)
            headers = bearer(w.key_a)
            if path.endswith("/stream"):
                async with http.stream(
                    method, concrete, params=params, headers=headers, timeout=1.5
                ) as response:
                    text = ""
                    try:
                        async for chunk in response.aiter_text():
                            text += chunk
                    except httpx.ReadTimeout:
                        pass
                status = response.status_code
            else:
                response = await http.request(
                    method, concrete, params=params, json=body, headers=headers
                )
                status, text = response.status_code, response.text
            if kind == "404" and status != 404:
                leaks.append(f"{method} {path}: {status} {text[:200]}")
            if kind == "admin" and status != 403:
                leaks.append(f"{method} {path}: {status} (admin only) {text[:200]}")
            if kind == "public" and status != 200:
                leaks.append(f"{method} {path}: {status}")
            if kind in ("list", "own") and status >= 500:
                leaks.append(f"{method} {path}: {status}")
            # B's things never show: its execution, schedule, event data, session content.
            markers = [w.execution_b, w.schedule_b, '"secret"', '"content":"b"', '"content": "b"']
            if kind == "list":
                markers += ["b-limit", "b-session"]
            shown = [m for m in markers if m in text] if kind in ("list", "own") else []
            if shown:
                leaks.append(f"{method} {path}: shows B's {shown}")
            # Naming B's project with A's key finds no project at all.
            if kind not in ("public", "admin") and not path.endswith("/stream"):
                other = await http.request(
                    method,
                    concrete,
                    params=params,
                    json=body,
                    headers={**headers, "X-Polos-Project": "proj-b"},
                )
                if other.status_code != 404:
                    leaks.append(f"{method} {path} as proj-b: {other.status_code}")
        assert not leaks, "\n".join(leaks)

    # B's things are untouched by everything A did.
    async with PolosClient(w.server.url, api_key=w.key_b) as b:
        execution = await b.get_execution(w.execution_b)
        assert execution.status == "waiting"
        events = await b.events.list("b-topic")
        assert [e.data for e in events.items] == [{"secret": "b"}]
        assert (await b.schedules.get(w.schedule_b)).cron == "0 3 * * *"
        assert (await b.sessions.get("b-session")).version == 1


async def test_keys__required_checked_revocable_and_admin_only_management(world: World) -> None:
    w = world
    async with httpx.AsyncClient(base_url=w.server.url, timeout=10) as http:
        assert (await http.get("/health")).status_code == 200
        missing = await http.get(f"{API}/executions")
        assert missing.status_code == 401 and "API key" in missing.json()["message"]
        for bad in ("Bearer nope", "Bearer polos_0123456789abcdef_" + "x" * 43, "Basic abc"):
            response = await http.get(f"{API}/executions", headers={"Authorization": bad})
            assert response.status_code == 401, bad
        assert (await http.get("/metrics", headers=bearer(w.key_a))).status_code == 403
        assert (await http.get("/metrics", headers=bearer(w.admin))).status_code == 200

        # The admin makes a project and a key for it; the token works at once.
        made = await http.post(
            f"{API}/admin/projects", json={"id": "proj-c"}, headers=bearer(w.admin)
        )
        assert made.status_code == 201
        created = await http.post(
            f"{API}/admin/keys",
            json={"name": "ci", "project_id": "proj-c"},
            headers=bearer(w.admin),
        )
        assert created.status_code == 201
        token, key_id = created.json()["token"], created.json()["id"]
        assert (await http.get(f"{API}/executions", headers=bearer(token))).status_code == 200
        listed = (await http.get(f"{API}/admin/keys", headers=bearer(w.admin))).json()["items"]
        assert token not in str(listed) and any(k["id"] == key_id for k in listed)

        # Revoked: refused on the very next request.
        revoked = await http.delete(f"{API}/admin/keys/{key_id}", headers=bearer(w.admin))
        assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
        assert (await http.get(f"{API}/executions", headers=bearer(token))).status_code == 401


async def test_workers__need_a_key_and_a_revoked_key_disconnects_them(
    world: World, start_worker: Workers
) -> None:
    w = world
    nokey = start_worker(
        WAITS_WORKER, api_url=w.server.url, env={"POLOS_API_KEY": ""}, wait=False, name="nokey"
    )
    deadline = time.monotonic() + 20
    while nokey.alive and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert not nokey.alive and "API key" in nokey.output()

    async with httpx.AsyncClient(base_url=w.server.url, timeout=10) as http:
        revoked = await http.delete(f"{API}/admin/keys/{w.key_b_id}", headers=bearer(w.admin))
        assert revoked.status_code == 200

        async def none_connected() -> bool:
            items = (
                await http.get(
                    f"{API}/workers", headers={**bearer(w.admin), "X-Polos-Project": "proj-b"}
                )
            ).json()["items"]
            return not any(i["status"] == "connected" for i in items)

        for _ in range(200):
            if await none_connected():
                break
            await asyncio.sleep(0.05)
        assert await none_connected()


def test_local_mode__refuses_a_non_loopback_address(tmp_path: Path) -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "polos.cli.server",
            "start",
            "--local",
            "--host",
            "0.0.0.0",
            "--database-url",
            f"sqlite:///{tmp_path / 'x.db'}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "loopback" in (done.stdout + done.stderr) and "Traceback" not in done.stderr


def test_cli__projects_and_keys_are_created_listed_and_revoked(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from polos.cli.server import main

    db = ["--database-url", f"sqlite:///{tmp_path / 'k.db'}"]
    run = CliRunner().invoke
    assert run(main, ["projects", "create", "acme", "--name", "Acme", *db]).exit_code == 0
    dup = run(main, ["projects", "create", "acme", *db])
    assert dup.exit_code != 0 and "already exists" in dup.output
    made = run(main, ["keys", "create", "--project", "acme", "--name", "ci", *db])
    assert made.exit_code == 0, made.output
    token = made.output.strip().splitlines()[-1]
    assert token.startswith("polos_")
    key_id = token.split("_")[1]
    listed = run(main, ["keys", "list", *db])
    assert key_id in listed.output and token not in listed.output
    both = run(main, ["keys", "create", "--project", "acme", "--admin", "--name", "x", *db])
    assert both.exit_code != 0 and "either" in both.output and "Traceback" not in both.output
    missing = run(main, ["keys", "create", "--project", "nope", "--name", "x", *db])
    assert missing.exit_code != 0 and "does not exist" in missing.output
    revoked = run(main, ["keys", "revoke", key_id, *db])
    assert revoked.exit_code == 0 and "revoked" in revoked.output
    assert run(main, ["keys", "revoke", "0000000000000000", *db]).exit_code != 0


async def test_workers__write_only_what_they_were_handed_and_cannot_take_another_projects_id(
    world: World,
) -> None:
    import json

    import websockets

    from polos.protocol import Hello, RecordStep, StepKind, StepRecord

    w = world
    ws_url = w.server.url.replace("http://", "ws://") + f"{API}/workers/connect"
    headers = bearer(w.key_a)
    # A worker of project A writes to B's execution under every plausible epoch: refused.
    async with websockets.connect(ws_url, additional_headers=headers) as ws:
        await ws.send(Hello(worker_id="mallory", workflows=[]).model_dump_json())
        welcome = json.loads(await ws.recv())
        assert welcome["type"] == "welcome" and welcome["project_id"] == "proj-a"
        for epoch in (1, 2, 3):
            step = StepRecord(key="evil", seq=99, kind=StepKind.RUN, output="pwned")
            message = RecordStep(req=epoch, execution_id=w.execution_b, epoch=epoch, step=step)
            await ws.send(message.model_dump_json())
            ack = json.loads(await ws.recv())
            assert (ack["type"], ack["code"]) == ("ack", "stale")
    # ...nor can it take over B's worker id (that would requeue B's executions).
    async with httpx.AsyncClient(base_url=w.server.url, headers=bearer(w.key_b)) as http:
        [b_worker] = [
            i
            for i in (await http.get(f"{API}/workers")).json()["items"]
            if i["status"] == "connected"
        ]
        async with websockets.connect(ws_url, additional_headers=headers) as ws:
            await ws.send(Hello(worker_id=b_worker["id"], workflows=[]).model_dump_json())
            goodbye = json.loads(await ws.recv())
            assert goodbye["type"] == "goodbye" and "in use" in goodbye["reason"]
        steps = (await http.get(f"{API}/executions/{w.execution_b}/steps")).json()["items"]
        assert "evil" not in [s["key"] for s in steps]
        execution = (await http.get(f"{API}/executions/{w.execution_b}")).json()
        assert execution["status"] == "waiting" and execution["attempt"] == 1
        workers = (await http.get(f"{API}/workers")).json()["items"]
        assert [i["status"] for i in workers if i["id"] == b_worker["id"]] == ["connected"]
