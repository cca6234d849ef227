"""Agent session memory: the store on both databases, the HTTP API of a real orchestrator,
``client.sessions`` and ``polos sessions``.

Store tests use a fresh database per test (``db_url``: SQLite and PostgreSQL). The API,
client and CLI tests share one orchestrator per store kind for the module; each test
uses session ids of its own, so they do not see each other's sessions except in lists,
which they filter.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from polos import ApiError, PolosClient
from polos.cli.main import main
from polos.errors import SessionConflictError
from polos.protocol import DEFAULT_PROJECT_ID, SessionSave
from polos.storage import SessionVersionConflict, Store, open_store
from polos.testing._processes import ServerProcess

pytestmark = pytest.mark.timeout(60)

P = DEFAULT_PROJECT_ID
OTHER = "other-project"
API = "/api/v1/sessions"


def msgs(*texts: str) -> list[dict[str, Any]]:
    """User/assistant turns alternating, one per text."""
    return [
        {"role": "user" if i % 2 == 0 else "assistant", "content": t} for i, t in enumerate(texts)
    ]


def body(*texts: str, summary: str | None = None, expected: int | None = None) -> SessionSave:
    return SessionSave(messages=msgs(*texts), summary=summary, expected_version=expected)


# ---------------------------------------------------------------------------- the store


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    s = await open_store(db_url)
    try:
        await s.ensure_project(P, "Default project")
        await s.ensure_project(OTHER, "Other project")
        yield s
    finally:
        await s.close()


async def test_store__a_new_session_is_version_0_and_empty(store: Store) -> None:
    memory = await store.sessions.get(P, "new")
    assert (memory.id, memory.version, memory.summary, memory.messages) == ("new", 0, None, [])
    assert (memory.created_at, memory.updated_at) == (None, None)


async def test_store__saves_bump_the_version_and_check_expected_version(store: Store) -> None:
    first = await store.sessions.save(P, "s", body("hi", expected=0), now=1000)
    assert (first.version, first.created_at, first.updated_at) == (1, 1000, 1000)

    second = await store.sessions.save(P, "s", body("hi", "hello", summary="greeting", expected=1))
    assert second.version == 2 and second.created_at == 1000 and second.updated_at is not None
    loaded = await store.sessions.get(P, "s")
    assert loaded == second
    assert loaded.messages == msgs("hi", "hello") and loaded.summary == "greeting"

    with pytest.raises(SessionVersionConflict) as stale:
        await store.sessions.save(P, "s", body("lost", expected=1))
    assert (stale.value.expected, stale.value.actual) == (1, 2)
    assert "is at version 2, not 1" in str(stale.value)
    with pytest.raises(SessionVersionConflict, match="already exists"):
        await store.sessions.save(P, "s", body("lost", expected=0))
    assert await store.sessions.get(P, "s") == second  # a refused save changes nothing

    # None overwrites whatever is there, and clears the summary when it is not given.
    forced = await store.sessions.save(P, "s", body("reset"))
    assert (forced.version, forced.summary, forced.messages) == (3, None, msgs("reset"))
    # ... and creates a missing session at version 1
    assert (await store.sessions.save(P, "fresh", body("x"))).version == 1

    assert await store.sessions.delete(P, "s") is True
    assert await store.sessions.delete(P, "s") is False
    assert (await store.sessions.get(P, "s")).version == 0
    with pytest.raises(SessionVersionConflict, match="does not exist"):
        await store.sessions.save(P, "s", body("late", expected=3))
    assert (await store.sessions.save(P, "s", body("again", expected=0))).version == 1


async def test_store__messages_are_stored_as_given(store: Store) -> None:
    odd = [
        {"role": "assistant", "content": "", "tool_calls": [{"id": "c1", "name": "f", "arguments": {"x": [1, 2.5, None]}}]},
        {"role": "tool", "name": "f", "tool_call_id": "c1", "content": "ünï\u0000code ✓", "extra": {"deep": {"a": True}}},
    ]  # fmt: skip
    await store.sessions.save(P, "odd", SessionSave(messages=odd, summary="ünï ✓"))
    loaded = await store.sessions.get(P, "odd")
    assert loaded.messages == odd and loaded.summary == "ünï ✓"


async def test_store__two_saves_on_one_version_exactly_one_wins(db_url: str, store: Store) -> None:
    # Two stores on one database, as two orchestrators (or two runs) would be.
    other = await open_store(db_url)
    try:
        for round_ in range(5):
            sid = f"race-{round_}"
            # Both create the session (expected 0) at once ...
            results = await asyncio.gather(
                store.sessions.save(P, sid, body("a", expected=0)),
                other.sessions.save(P, sid, body("b", expected=0)),
                return_exceptions=True,
            )
            won = [r for r in results if not isinstance(r, BaseException)]
            lost = [r for r in results if isinstance(r, BaseException)]
            assert len(won) == 1 and len(lost) == 1, results
            assert isinstance(lost[0], SessionVersionConflict), lost
            # ... then both update version 1 at once.
            results = await asyncio.gather(
                store.sessions.save(P, sid, body("a", "a2", expected=1)),
                other.sessions.save(P, sid, body("b", "b2", expected=1)),
                return_exceptions=True,
            )
            won = [r for r in results if not isinstance(r, BaseException)]
            assert len(won) == 1, results
            assert [type(r) for r in results if isinstance(r, BaseException)] == [
                SessionVersionConflict
            ]
            stored = await store.sessions.get(P, sid)
            assert stored.version == 2 and stored.messages == won[0].messages  # type: ignore[union-attr]
        # Unconditional saves of a new session at once: both succeed, one after the other.
        both = await asyncio.gather(
            store.sessions.save(P, "blind", body("a")), other.sessions.save(P, "blind", body("b"))
        )
        assert sorted(m.version for m in both) == [1, 2]
    finally:
        await other.close()


async def test_store__list_pages_newest_first_with_counts(store: Store) -> None:
    for i in range(5):
        texts = [f"m{j}" for j in range(i)]
        await store.sessions.save(P, f"s{i}", body(*texts, summary="sum" if i == 2 else None), now=1000 + i)  # fmt: skip
    await store.sessions.save(P, "tie-a", body("x"), now=1004)  # same time as s4: id breaks ties
    await store.sessions.save(OTHER, "elsewhere", body("x"), now=2000)

    seen = []
    cursor = None
    while True:
        items, cursor = await store.sessions.list_sessions(P, limit=2, cursor=cursor)
        seen.extend(items)
        if cursor is None:
            break
    assert [s.id for s in seen] == ["tie-a", "s4", "s3", "s2", "s1", "s0"]
    by_id = {s.id: s for s in seen}
    assert [by_id[f"s{i}"].message_count for i in range(5)] == [0, 1, 2, 3, 4]
    assert [by_id[f"s{i}"].has_summary for i in range(5)] == [False, False, True, False, False]
    assert (by_id["s3"].version, by_id["s3"].created_at, by_id["s3"].updated_at) == (1, 1003, 1003)
    whole, rest = await store.sessions.list_sessions(P, limit=6)
    assert len(whole) == 6 and rest is None


async def test_store__projects_do_not_share_sessions(store: Store) -> None:
    await store.sessions.save(P, "same", body("default"))
    await store.sessions.save(OTHER, "same", body("other", "more"))
    assert (await store.sessions.get(P, "same")).messages == msgs("default")
    assert (await store.sessions.get(OTHER, "same")).messages == msgs("other", "more")
    assert await store.sessions.delete(OTHER, "same")
    assert (await store.sessions.get(P, "same")).version == 1
    assert [s.id for s in (await store.sessions.list_sessions(OTHER))[0]] == []


# ---------------------------------------------------------------------------- HTTP API


@pytest.fixture(scope="module")
def server(
    module_store_kind: str, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[ServerProcess]:
    """One orchestrator per store kind for the module, with a second project."""
    tmp: Path = tmp_path_factory.mktemp(f"sessions-{module_store_kind}")
    pg_server = request.getfixturevalue("pg_server") if module_store_kind == "postgres" else None
    database = pg_server.create(migrated=True) if pg_server is not None else f"sqlite:///{tmp / 'polos.db'}"  # fmt: skip
    process = ServerProcess(database, log_path=tmp / "srv.log")
    try:
        process.start()

        async def add_project() -> None:
            s = await open_store(database)
            try:
                await s.ensure_project(OTHER, "Other project")
            finally:
                await s.close()

        asyncio.run(add_project())
        yield process
    finally:
        process.stop(timeout=10)
        if "Traceback" in process.output():  # no request may have been a 500
            print(process.output()[-6000:])
            raise AssertionError("the orchestrator logged a traceback")
        if pg_server is not None:
            pg_server.drop(database)


@pytest.fixture(scope="module")
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        yield client


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def problem(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    data = response.json()
    assert set(data) == {"code", "message"} and data["code"] == code, data
    return str(data["message"])


def test_api__get_put_delete_and_versions(http: httpx.Client) -> None:
    sid = unique("user:42/chat@web.v1")  # every allowed punctuation, including '/'
    path = f"{API}/{sid}"
    fresh = http.get(path)
    assert fresh.status_code == 200
    assert fresh.json() == {"id": sid, "summary": None, "messages": [], "version": 0, "created_at": None, "updated_at": None}  # fmt: skip

    saved = http.put(path, json={"messages": msgs("hi"), "expected_version": 0})
    assert saved.status_code == 200, saved.text
    assert saved.json()["version"] == 1 and saved.json()["messages"] == msgs("hi")
    again = http.put(path, json={"messages": msgs("hi", "yo"), "summary": "s", "expected_version": 1})  # fmt: skip
    assert again.json()["version"] == 2
    assert http.get(path).json() == again.json()

    message = problem(http.put(path, json={"messages": [], "expected_version": 1}), 409, "version_conflict")  # fmt: skip
    assert "version 2, not 1" in message
    problem(http.put(path, json={"messages": [], "expected_version": 0}), 409, "version_conflict")
    assert http.put(path, json={"messages": []}).json()["version"] == 3  # unconditional

    assert http.delete(path).status_code == 204
    assert "does not exist" in problem(http.delete(path), 404, "session_not_found")
    assert http.get(path).json()["version"] == 0


def test_api__bad_input_is_a_clear_422(http: httpx.Client) -> None:
    path = f"{API}/{unique('bad')}"
    cases: list[tuple[Any, str]] = [
        ({"messages": [{"content": "no role"}]}, "message 0 has no 'role'"),
        ({"messages": [{"role": 7}]}, "message 0 has no 'role'"),
        ({"messages": ["text"]}, "messages.0"),
        ({"messages": "text"}, "messages"),
        ({}, "messages"),
        ({"messages": [], "expected_version": -1}, "expected_version"),
        ({"messages": [], "extra": 1}, "extra"),
        ({"messages": [{"role": "user"}] * 10_001}, "at most 10000"),
        ({"messages": [], "summary": "a\u0000b"}, "NUL"),
    ]
    for payload, expected in cases:
        assert expected in problem(http.put(path, json=payload), 422, "invalid_request"), payload
    problem(http.put(path, content=b"{not json", headers={"content-type": "application/json"}), 422, "invalid_request")  # fmt: skip
    for bad_id in ("has space", "x" * 201, "semi;colon", "%00"):
        for method in ("GET", "PUT", "DELETE"):
            response = http.request(method, f"{API}/{bad_id}", json={"messages": []})
            assert "session id" in problem(response, 422, "invalid_session_id"), (method, bad_id)
    problem(http.get(API, params={"cursor": "not-a-cursor"}), 400, "invalid_cursor")
    problem(http.get(API, params={"limit": 0}), 422, "invalid_request")
    problem(http.get(f"{API}/x", headers={"X-Polos-Project": "nope"}), 404, "project_not_found")


def test_api__list_pages_and_projects(http: httpx.Client) -> None:
    tag = unique("page")
    for i in range(3):
        http.put(f"{API}/{tag}-{i}", json={"messages": msgs(*["t"] * i), "summary": "s" if i else None})  # fmt: skip
    mine: list[dict[str, Any]] = []
    cursor = None
    for _ in range(100):
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = http.get(API, params=params).json()
        mine += [s for s in page["items"] if s["id"].startswith(tag)]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [s["id"] for s in mine] == [f"{tag}-2", f"{tag}-1", f"{tag}-0"]
    assert [s["message_count"] for s in mine] == [2, 1, 0]
    assert set(mine[0]) == {"id", "version", "message_count", "has_summary", "created_at", "updated_at"}  # fmt: skip

    other = {"X-Polos-Project": OTHER}
    assert http.get(f"{API}/{tag}-2", headers=other).json()["version"] == 0
    assert not [s for s in http.get(API, headers=other).json()["items"] if s["id"].startswith(tag)]
    problem(http.delete(f"{API}/{tag}-2", headers=other), 404, "session_not_found")


async def test_client__get_save_conflict_list_delete(server: ServerProcess) -> None:
    sid = unique("client")
    async with PolosClient(server.url) as client:
        assert (await client.sessions.get(sid)).version == 0
        first = await client.sessions.save(sid, msgs("hi"), expected_version=0)
        second = await client.sessions.save(sid, msgs("hi", "ho"), summary="sum", expected_version=first.version)  # fmt: skip
        assert (second.version, second.summary) == (2, "sum")
        with pytest.raises(SessionConflictError) as conflict:
            await client.sessions.save(sid, msgs("late"), expected_version=1)
        assert (conflict.value.status_code, conflict.value.code) == (409, "version_conflict")
        assert isinstance(conflict.value, ApiError)
        with pytest.raises(ApiError) as invalid:
            await client.sessions.save(sid, [{"content": "no role"}])
        assert invalid.value.status_code == 422 and "role" in invalid.value.message

        for odd in (".", "..", "a/../b", "./x"):  # ids that look like URL path segments
            saved = await client.sessions.save(odd, msgs(odd))
            assert (await client.sessions.get(odd)).messages == msgs(odd) == saved.messages
            await client.sessions.delete(odd)

        listed = await client.sessions.list(limit=500)
        assert [s.version for s in listed.items if s.id == sid] == [2]
        assert client.sessions.get_sync(sid).version == 2
        assert client.sessions.save_sync(sid, msgs("sync")).version == 3
        assert await client.sessions.delete(sid) is None
        with pytest.raises(ApiError) as gone:
            client.sessions.delete_sync(sid)
        assert (gone.value.status_code, gone.value.code) == (404, "session_not_found")


def test_cli__sessions_list_show_delete(server: ServerProcess) -> None:
    sid = unique("cli")
    PolosClient(server.url).sessions.save_sync(  # a sync twin, as a script would call it
        sid,
        [
            {"role": "user", "content": "What is the weather in Paris?"},
            {"role": "assistant", "content": "", "tool_calls": [{"id": "c1", "name": "weather", "arguments": {"city": "Paris"}}]},
            {"role": "tool", "name": "weather", "tool_call_id": "c1", "content": "18 C, sunny"},
            {"role": "assistant", "content": [{"type": "text", "text": "It is sunny."}]},
            {"role": "assistant", "tool_calls": [{"type": "function", "function": {"name": "book", "arguments": '{"n": 2}'}}]},
        ],
        summary="The user asked about the weather.",
    )  # fmt: skip

    def cli(*args: str, ok: bool = True) -> str:
        done = CliRunner().invoke(
            main, ["--api-url", server.url, "sessions", *args], env={"COLUMNS": "300"}
        )
        assert (done.exit_code == 0) == ok, done.output
        assert done.exception is None or isinstance(done.exception, SystemExit), done.exception
        return done.output

    listed = cli("list")
    assert sid in listed and "VERSION" in listed
    assert sid in [s["id"] for s in json.loads(cli("list", "--json"))["items"]]
    shown = cli("show", sid)
    for expected in (
        "The user asked about the weather.",
        "user:",
        "What is the weather in Paris?",
        '→ weather(city="Paris")',
        "tool weather:",
        "18 C, sunny",
        "It is sunny.",
        "→ book(n=2)",
    ):
        assert expected in shown, (expected, shown)
    assert "earlier messages not shown" in cli("show", sid, "--last", "2")
    assert json.loads(cli("show", sid, "--json"))["version"] == 1
    assert "nothing stored" in cli("show", unique("never"))
    assert f"deleted session {sid}" in cli("delete", sid)
    assert "does not exist" in cli("delete", sid, ok=False)
    assert "session id" in cli("show", "bad id", ok=False)
