"""``client.events``: publish events, read a topic's log, stream it live.

Every topic keeps an ordered log; an event's ``seq`` is its position in it. A stream
remembers the last ``seq`` it delivered and, when its connection drops, reconnects
(to the next orchestrator when several are configured) with ``Last-Event-ID`` set to
that ``seq``: no event is lost and none is delivered twice.
"""

from __future__ import annotations

import asyncio
import builtins
import time
from collections.abc import AsyncGenerator, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import httpx

from polos.errors import ConfigurationError, OrchestratorUnavailableError, SerializationError
from polos.protocol import (
    API_PREFIX,
    BatchPublishResponse,
    Event,
    EventPage,
    PublishRequest,
    PublishResponse,
)

from ._base import _jsonable
from ._sse import SSEDecoder

if TYPE_CHECKING:
    from ._client import PolosClient

BATCH = 1000
"""Most events sent in one batch request (the API's limit)."""

RECONNECT_MIN = 0.1
RECONNECT_MAX = 2.0

EventInput = PublishRequest | tuple[str, Any] | tuple[str, Any, str | None] | Mapping[str, Any]
"""What :meth:`EventsClient.publish_many` accepts for one event."""

STREAM_READ_TIMEOUT_S = 60.0
"""An event stream silent this long (four missed keep-alives) is dead: reconnect."""

_DROPPED = (httpx.NetworkError, httpx.RemoteProtocolError, httpx.TimeoutException)


def _body(topic: str, data: Any, idempotency_key: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"topic": topic, "data": _jsonable(data)}
    if idempotency_key is not None:
        body["idempotency_key"] = idempotency_key
    return body


def _item_body(item: EventInput) -> dict[str, Any]:
    if isinstance(item, PublishRequest):
        return _body(item.topic, item.data, item.idempotency_key)
    if isinstance(item, tuple):
        if len(item) not in (2, 3):
            raise ConfigurationError(
                "an event tuple is (topic, data) or (topic, data, idempotency_key)"
            )
        return _body(item[0], item[1], item[2] if len(item) == 3 else None)
    if isinstance(item, Mapping):
        body = dict(item)
        if "data" in body:
            body["data"] = _jsonable(body["data"])
        return body
    raise ConfigurationError(
        f"cannot publish {type(item).__name__}: give a PublishRequest, "
        "a (topic, data) tuple or a dict"
    )


def _event(data: str) -> Event:
    try:
        return Event.model_validate_json(data)
    except ValueError as exc:
        raise SerializationError(f"the event stream sent an invalid event: {exc}") from exc


def _seq(value: str) -> int | None:
    return int(value) if value.isascii() and value.isdigit() else None


class EventsClient:
    """Publish events, read a topic's log and stream it (``client.events``).

    Topics are strings without whitespace (``order/new``, ``warehouse.pickup/42``);
    each keeps an ordered, durable log. Publishing an event also wakes the
    executions waiting for it and starts the workflows triggered by its topic.
    """

    def __init__(self, client: PolosClient) -> None:
        self.client = client

    async def publish(
        self, topic: str, data: Any = None, *, idempotency_key: str | None = None
    ) -> PublishResponse:
        """Append one event (JSON data or a pydantic model) to ``topic``.

        With ``idempotency_key``, publishing again with the same key returns the first
        event (``created`` is then False) instead of appending another.

        Raises:
            ApiError: the topic or the data was refused (HTTP 422, the message says why).
        """
        answer = await self.client._request(
            "POST", "/events", json=_body(topic, data, idempotency_key)
        )
        return PublishResponse.model_validate(answer)

    async def publish_many(self, events: Iterable[EventInput]) -> builtins.list[PublishResponse]:
        """Append many events with few requests; the answers come in the order given.

        Each event is a :class:`~polos.protocol.PublishRequest`, a ``(topic, data)``
        or ``(topic, data, idempotency_key)`` tuple, or a dict with those keys. Events
        are sent 1,000 per request, each request in one transaction.
        """
        bodies = [_item_body(item) for item in events]
        published: builtins.list[PublishResponse] = []
        for start in range(0, len(bodies), BATCH):
            answer = await self.client._request(
                "POST", "/events/batch", json={"events": bodies[start : start + BATCH]}
            )
            published += BatchPublishResponse.model_validate(answer).items
        return published

    async def list(self, topic: str, *, after: int = 0, limit: int = 100) -> EventPage:
        """Events of ``topic`` with a ``seq`` above ``after``, oldest first.

        Pass ``page.next_after`` as ``after`` for the next page (None: the end of the log).
        """
        params = {"topic": topic, "after": after, "limit": limit}
        return EventPage.model_validate(await self.client._request("GET", "/events", params=params))

    async def stream(self, topic: str, *, after: int | None = None) -> AsyncGenerator[Event, None]:
        """Events of ``topic`` as they are published, for as long as you iterate.

        ``after=N`` starts with the logged events whose ``seq`` is above N (``after=0``:
        the whole log), then goes on live; without it, only events published from now
        on arrive. A dropped connection is re-established (with a short backoff, on the
        next orchestrator when several are configured) from the last ``seq`` delivered,
        so that no event is missed or repeated.

        Raises:
            ApiError: the topic was refused (HTTP 422).
            OrchestratorUnavailableError: no orchestrator could be reached for
                ``client.retry_for`` seconds.
        """
        client = self.client
        position = after  # the stream resumes after this seq
        first = True
        delay = RECONNECT_MIN
        deadline: float | None = None  # while reconnecting: when to give up
        misses = 0  # consecutive failed connections in this round of the URLs
        while True:
            params: dict[str, str | int] = {"topic": topic}
            headers = {"Accept": "text/event-stream"}
            if first and after is not None:
                params["after"] = after
            elif position is not None:
                headers["Last-Event-ID"] = str(position)
            url = client.api_url + API_PREFIX + "/events/stream"
            failure: str | None = None
            try:
                async with client._client(long_poll=True).stream(
                    "GET",
                    url,
                    params=params,
                    headers=headers,
                    timeout=httpx.Timeout(client.timeout, connect=5.0, read=STREAM_READ_TIMEOUT_S),
                ) as response:
                    if response.status_code == 503:
                        failure = "HTTP 503"  # this replica cannot serve now: try the next
                    elif response.status_code >= 400:
                        await response.aread()
                        raise client._error(response)
                    else:
                        first, misses, deadline = False, 0, None
                        decoder = SSEDecoder("" if position is None else str(position))
                        async for line in response.aiter_lines():
                            delay = RECONNECT_MIN
                            message = decoder.feed(line)
                            if message is not None and message.event in ("event", "message"):
                                event = _event(message.data)
                                if position is None or event.seq > position:
                                    position = event.seq
                                    yield event
                            elif not line and (seq := _seq(decoder.last_event_id)) is not None:
                                # an id without data: where the server says the stream stands
                                position = seq if position is None else max(position, seq)
            except _DROPPED as exc:
                failure = str(exc) or type(exc).__name__
            if failure is None:
                # The server ended the stream (it stopped or restarted): reconnect.
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECONNECT_MAX)
                continue
            client._fail_over()
            misses += 1
            if misses < len(client.api_urls):
                continue  # another orchestrator is configured: try it at once
            misses = 0
            now = time.monotonic()
            if deadline is None:
                deadline = now + client.retry_for
            if now + delay > deadline:
                raise OrchestratorUnavailableError(
                    f"cannot reach the orchestrator at {', '.join(client.api_urls)} "
                    f"to stream {topic!r}: {failure}"
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX)

    # ------------------------------------------------------------------ sync twins

    def publish_sync(
        self, topic: str, data: Any = None, *, idempotency_key: str | None = None
    ) -> PublishResponse:
        """Blocking :meth:`publish`."""
        published: PublishResponse = self.client._portal.run(
            self.client._in_portal(
                lambda c: c.events.publish(topic, data, idempotency_key=idempotency_key)
            )
        )
        return published

    def publish_many_sync(self, events: Iterable[EventInput]) -> builtins.list[PublishResponse]:
        """Blocking :meth:`publish_many`."""
        items = builtins.list(events)
        published: builtins.list[PublishResponse] = self.client._portal.run(
            self.client._in_portal(lambda c: c.events.publish_many(items))
        )
        return published

    def list_sync(self, topic: str, *, after: int = 0, limit: int = 100) -> EventPage:
        """Blocking :meth:`list`."""
        page: EventPage = self.client._portal.run(
            self.client._in_portal(lambda c: c.events.list(topic, after=after, limit=limit))
        )
        return page

    def __repr__(self) -> str:
        return f"EventsClient({self.client!r})"
