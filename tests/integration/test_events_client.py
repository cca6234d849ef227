"""``client.events``, ``client.list_waits`` and ``client.resume`` against a real orchestrator.

Streams are also checked against a scripted Server-Sent Events server, which drops
connections at chosen points, and against a real orchestrator killed mid-stream.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest
from pydantic import BaseModel

from polos import ApiError, ExecutionNotFoundError, OrchestratorUnavailableError, PolosClient
from polos.errors import NotWaitingError
from polos.protocol import Event, PublishRequest, WaitKind
from polos.testing._processes import ServerProcess, free_port

pytestmark = pytest.mark.timeout(60)


async def take(stream: AsyncIterator[Event], n: int, timeout: float = 15.0) -> list[Event]:
    """The next ``n`` events of a stream."""

    async def collect() -> list[Event]:
        return [await anext(stream) for _ in range(n)]

    return await asyncio.wait_for(collect(), timeout)


# ---------------------------------------------------------------------- publish and list


async def test_events_publish__numbers_events_per_topic(client: PolosClient) -> None:
    first = await client.events.publish("orders/new", {"id": 1})
    second = await client.events.publish("orders/new", {"id": 2})
    other = await client.events.publish("warehouse.pickup/42")

    assert (first.topic, first.seq, first.data, first.created) == ("orders/new", 1, {"id": 1}, True)
    assert (second.seq, second.data) == (2, {"id": 2})
    assert first.id != second.id
    assert (other.seq, other.data, other.triggered) == (1, None, [])
    assert first.created_at <= second.created_at


async def test_events_publish__idempotency_key_publishes_once(client: PolosClient) -> None:
    first = await client.events.publish("payments", {"v": 1}, idempotency_key="pay-1")
    again = await client.events.publish("payments", {"v": 2}, idempotency_key="pay-1")
    other = await client.events.publish("payments", {"v": 3}, idempotency_key="pay-2")

    assert first.created and not again.created
    assert (again.id, again.seq, again.data) == (first.id, first.seq, {"v": 1})
    assert again.idempotency_key == "pay-1"
    assert other.created and other.seq == 2
    page = await client.events.list("payments")
    assert [(e.seq, e.data) for e in page.items] == [(1, {"v": 1}), (2, {"v": 3})]


async def test_events_publish__pydantic_and_datetime_data(client: PolosClient) -> None:
    class Order(BaseModel):
        id: str
        at: datetime

    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    event = await client.events.publish("orders", Order(id="o-1", at=when))
    logged = await client.events.publish("orders", {"when": when})

    assert event.data == {"id": "o-1", "at": "2026-01-02T03:04:05Z"}
    assert logged.data == {"when": "2026-01-02T03:04:05Z"}


async def test_events_publish_many__every_input_shape_in_order(client: PolosClient) -> None:
    published = await client.events.publish_many(
        [
            ("a", 1),
            PublishRequest(topic="b", data={"x": 2}),
            {"topic": "a", "data": 3, "idempotency_key": "k"},
            ("a", 4, "k"),  # the same key: the third event again
            ("b", None),
        ]
    )

    assert [(e.topic, e.seq, e.data, e.created) for e in published] == [
        ("a", 1, 1, True),
        ("b", 1, {"x": 2}, True),
        ("a", 2, 3, True),
        ("a", 2, 3, False),
        ("b", 2, None, True),
    ]
    assert await client.events.publish_many([]) == []


async def test_events_list__pages_through_a_topic(client: PolosClient) -> None:
    await client.events.publish_many([("pages", i) for i in range(5)])
    await client.events.publish("elsewhere", "not in the page")

    first = await client.events.list("pages", limit=2)
    second = await client.events.list("pages", after=first.next_after or 0, limit=2)
    third = await client.events.list("pages", after=second.next_after or 0, limit=2)

    assert [(e.seq, e.data) for e in first.items] == [(1, 0), (2, 1)]
    assert first.next_after == 2
    assert [e.seq for e in second.items] == [3, 4]
    assert second.next_after == 4
    assert [e.seq for e in third.items] == [5]
    assert third.next_after is None
    assert all(e.topic == "pages" for e in first.items + second.items + third.items)
    empty = await client.events.list("never-published")
    assert (empty.items, empty.next_after) == ([], None)


@pytest.mark.parametrize("topic", ["has space", "", "tab\there"])
async def test_events_publish__bad_topic_is_refused_clearly(
    client: PolosClient, topic: str
) -> None:
    with pytest.raises(ApiError) as info:
        await client.events.publish(topic, 1)

    assert info.value.status_code == 422
    assert "topic" in info.value.message


def test_events_sync_twins(server: ServerProcess) -> None:
    client = PolosClient(server.url)

    one = client.events.publish_sync("sync", {"n": 1}, idempotency_key="s-1")
    many = client.events.publish_many_sync([("sync", 2), ("sync", 3)])
    page = client.events.list_sync("sync", after=1, limit=10)
    waits = client.list_waits_sync(WaitKind.SUSPEND)

    assert one.seq == 1
    assert [e.seq for e in many] == [2, 3]
    assert [e.data for e in page.items] == [2, 3]
    assert waits.items == []
    with pytest.raises(ExecutionNotFoundError):
        client.resume_sync("no-such-execution", "approval")


# ---------------------------------------------------------------------- streams


async def test_events_stream__from_after_then_live(client: PolosClient) -> None:
    await client.events.publish_many([("live", i) for i in (1, 2, 3)])
    stream = client.events.stream("live", after=1)
    try:
        logged = await take(stream, 2)
        waiting = asyncio.ensure_future(take(stream, 2))
        await asyncio.sleep(0.2)
        await client.events.publish("live", 4)
        await client.events.publish("live", 5)
        live = await waiting
    finally:
        await stream.aclose()

    assert [(e.seq, e.data) for e in logged] == [(2, 2), (3, 3)]
    assert [(e.seq, e.data) for e in live] == [(4, 4), (5, 5)]
    assert all(isinstance(e, Event) and e.topic == "live" for e in logged + live)


async def test_events_stream__without_after_only_new_events(client: PolosClient) -> None:
    await client.events.publish("news", "old")
    stream = client.events.stream("news")
    first = asyncio.ensure_future(anext(stream))
    try:
        # The stream's connection is not observable: publish until it sees one.
        for _ in range(100):
            await client.events.publish("news", "new")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(first), 0.1)
                break
        event = await first
        await client.events.publish("news", "next")
        following = await take(stream, 1)
    finally:
        await stream.aclose()

    assert event.data == "new" and event.seq >= 2
    assert following[0].seq > event.seq


async def test_events_stream__restarted_with_after_the_last_seq(client: PolosClient) -> None:
    await client.events.publish_many([("resume", i) for i in (1, 2)])
    stream = client.events.stream("resume", after=0)
    seen = await take(stream, 2)
    await stream.aclose()
    await client.events.publish("resume", 3)

    again = client.events.stream("resume", after=seen[-1].seq)
    try:
        rest = await take(again, 1)
    finally:
        await again.aclose()

    assert [e.seq for e in seen + rest] == [1, 2, 3]


async def test_events_stream__survives_an_orchestrator_restart(
    client: PolosClient, server: ServerProcess
) -> None:
    await client.events.publish_many([("restart", i) for i in (1, 2)])
    stream = client.events.stream("restart", after=0)
    try:
        before = await take(stream, 2)
        # Blocking on purpose: the stream cannot reconnect before event 3 is published,
        # so it only gets it by reconnecting with Last-Event-ID: 2.
        server.kill()
        server.restart()
        httpx.post(
            server.url + "/api/v1/events", json={"topic": "restart", "data": 3}, timeout=10
        ).raise_for_status()
        logged = await take(stream, 1, timeout=30)
        waiting = asyncio.ensure_future(take(stream, 1))
        await asyncio.sleep(0.2)
        await client.events.publish("restart", 4)
        live = await waiting
    finally:
        await stream.aclose()

    assert [(e.seq, e.data) for e in before + logged + live] == [(1, 1), (2, 2), (3, 3), (4, 4)]


async def test_events_stream__fails_over_to_the_next_orchestrator(server: ServerProcess) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    async with PolosClient([dead, server.url]) as client:
        await client.events.publish("failover", "x")
        stream = client.events.stream("failover", after=0)
        try:
            events = await take(stream, 1)
        finally:
            await stream.aclose()

    assert [e.data for e in events] == ["x"]


async def test_events_stream__bad_topic_raises_api_error(client: PolosClient) -> None:
    stream = client.events.stream("", after=0)
    with pytest.raises(ApiError) as info:
        await take(stream, 1)

    assert info.value.status_code == 422
    assert "topic" in info.value.message


async def test_events_stream__unreachable_orchestrator() -> None:
    async with PolosClient(f"http://127.0.0.1:{free_port()}", retry_for=0.5) as client:
        with pytest.raises(OrchestratorUnavailableError, match="cannot reach"):
            await take(client.events.stream("anything"), 1)


# ---------------------------------------------------------------------- scripted SSE server


class ScriptedSSE:
    """An HTTP server answering each stream request with the next script, then dropping it.

    A script is the raw event-stream text; the connection is aborted after it (no
    clean end of the chunked body), like a crashed orchestrator. With no script
    left, the connection stays open.
    """

    def __init__(self, scripts: list[str]) -> None:
        self.scripts = scripts
        self.requests: list[str] = []
        self.server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def __aenter__(self) -> ScriptedSSE:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.requests.append((await reader.readuntil(b"\r\n\r\n")).decode())
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"transfer-encoding: chunked\r\n\r\n"
        )
        if not self.scripts:
            await writer.drain()
            await reader.read()  # until the client goes away
            writer.close()
            return
        body = self.scripts.pop(0).encode()
        writer.write(b"%x\r\n%s\r\n" % (len(body), body))
        await writer.drain()
        writer.transport.abort()


def sse(seq: int, data: object = None) -> str:
    event = Event(id=f"e{seq}", topic="t", seq=seq, data=data, created_at=seq)
    return f"id: {seq}\nevent: event\ndata: {event.model_dump_json()}\n\n"


def header(request: str, name: str) -> str | None:
    for line in request.split("\r\n")[1:]:
        key, _, value = line.partition(":")
        if key.strip().lower() == name.lower():
            return value.strip()
    return None


async def test_events_stream__reconnects_with_last_event_id_without_loss_or_repeat() -> None:
    scripts = [
        ": keepalive\n\n" + sse(1) + sse(2) + "id: 3\nevent: event\ndata: {unfinished",
        sse(2) + sse(3, "three") + ": keepalive\n\n",  # 2 again: must not be repeated
        sse(4),
    ]
    async with ScriptedSSE(scripts) as fake, PolosClient(fake.url) as client:
        stream = client.events.stream("t", after=0)
        try:
            events = await take(stream, 4)
        finally:
            await stream.aclose()

    assert [(e.seq, e.data) for e in events] == [(1, None), (2, None), (3, "three"), (4, None)]
    assert "after=0" in fake.requests[0].split("\r\n")[0]
    assert header(fake.requests[0], "Last-Event-ID") is None
    assert [header(r, "Last-Event-ID") for r in fake.requests[1:]] == ["2", "3"]
    assert all("topic=t" in r.split("\r\n")[0] for r in fake.requests)


async def test_events_stream__an_id_without_data_sets_the_resume_point() -> None:
    scripts = ["id: 10\n\n", sse(11)]
    async with ScriptedSSE(scripts) as fake, PolosClient(fake.url) as client:
        stream = client.events.stream("t")
        try:
            events = await take(stream, 1)
        finally:
            await stream.aclose()

    assert [e.seq for e in events] == [11]
    assert "after=" not in fake.requests[0].split("\r\n")[0]
    assert [header(r, "Last-Event-ID") for r in fake.requests] == [None, "10"]


async def test_events_stream__fails_over_across_urls_when_one_dies() -> None:
    one, two = ScriptedSSE([sse(1)]), ScriptedSSE([sse(2)])
    async with one, two, PolosClient([one.url, two.url]) as client:
        stream = client.events.stream("t", after=0)
        try:
            events = await take(stream, 2)
        finally:
            await stream.aclose()

    assert [e.seq for e in events] == [1, 2]
    assert header(two.requests[0], "Last-Event-ID") == "1"


# ---------------------------------------------------------------------- waits and resume


async def test_list_waits__empty_project(client: PolosClient) -> None:
    everything = await client.list_waits()
    suspended = await client.list_waits("suspend", workflow_id="greet", limit=10)
    sleeping = await client.list_waits(WaitKind.SLEEP)

    for page in (everything, suspended, sleeping):
        assert page.items == []
        assert page.next_cursor is None


async def test_resume__unknown_execution(client: PolosClient) -> None:
    with pytest.raises(ExecutionNotFoundError) as info:
        await client.resume("no-such-execution", "approval", {"approved": True})

    assert info.value.status_code == 404


async def test_resume__an_execution_that_is_not_waiting(client: PolosClient, start_worker) -> None:
    start_worker()
    handle = await client.invoke("greet", {"name": "resume"})
    assert await handle.result(timeout=30) == {"greeting": "hello resume"}

    with pytest.raises(NotWaitingError) as info:
        await client.resume(handle.id, "approval", {"approved": True})

    assert info.value.status_code == 409
    assert info.value.code == "not_waiting"
    assert info.value.message
    assert (await client.get_execution(handle.id)).status == "completed"
