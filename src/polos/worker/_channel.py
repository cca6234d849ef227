"""The worker's end of the channel: one outbound WebSocket, reconnected for ever.

Writes go through :meth:`Channel.request`, which keeps each message in an
outbox until the orchestrator acknowledges it. When the connection drops (the
orchestrator restarted, the network blinked), the channel reconnects with
backoff, says ``Hello`` again with the executions it still runs, and re-sends
every unacknowledged write in order: a result that could not be reported is
never lost, and the orchestrator applies a re-sent write at most once.

Live events (:class:`~polos.protocol.Emit`) bypass the outbox: :meth:`Channel.post`
sends one if the channel is up and drops it otherwise (they are best effort).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass

import pydantic
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from polos.errors import ConfigurationError
from polos.protocol import (
    API_PREFIX,
    PROJECT_HEADER,
    Ack,
    Cancel,
    Complete,
    Drain,
    Emit,
    Fail,
    Goodbye,
    Heartbeat,
    Hello,
    RecordStep,
    Release,
    Task,
    Wait,
    Welcome,
    orchestrator_message_adapter,
)

log = logging.getLogger("polos.worker")

Write = RecordStep | Wait | Complete | Fail | Release


def _channel_url(api_url: str) -> str:
    base = api_url.rstrip("/")
    if base.startswith("https://"):
        base = "wss://" + base[len("https://") :]
    elif base.startswith("http://"):
        base = "ws://" + base[len("http://") :]
    return base + API_PREFIX + "/workers/connect"


class FatalChannelError(ConfigurationError):
    """The orchestrator refused this worker for a reason reconnecting cannot fix."""


@dataclass(slots=True)
class _Pending:
    message: Write
    future: asyncio.Future[Ack]


class Channel:
    """Connection management, the outbox and message routing for one worker."""

    def __init__(
        self,
        *,
        api_urls: list[str],
        project_id: str | None,
        api_key: str | None,
        make_hello: Callable[[], Hello],
        on_task: Callable[[Task], None],
        on_cancel: Callable[[Cancel], None],
        on_welcome: Callable[[Welcome], None],
    ) -> None:
        self.urls = [_channel_url(u) for u in api_urls]
        self._url_index = 0
        self._headers = {}
        if project_id:
            self._headers[PROJECT_HEADER] = project_id
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._make_hello = make_hello
        self._on_task = on_task
        self._on_cancel = on_cancel
        self._on_welcome = on_welcome
        self._ws: ClientConnection | None = None
        self._connected = asyncio.Event()
        self._send_lock = asyncio.Lock()
        self._outbox: dict[int, _Pending] = {}
        self._background: set[asyncio.Future[None]] = set()
        self._next_req = 0
        self._closing = False
        self.heartbeat_ms = 1000
        self.reconnects = 0
        self.features: frozenset[str] = frozenset()
        """Optional messages the orchestrator accepts (from its ``Welcome``)."""

    @property
    def url(self) -> str:
        """The channel URL tried now (workers move to the next one when it fails)."""
        return self.urls[self._url_index]

    @property
    def closing(self) -> bool:
        """Whether :meth:`close` was called (or the orchestrator refused us for good)."""
        return self._closing

    @property
    def connected(self) -> bool:
        """Whether the channel is up (said hello and got welcome)."""
        return self._connected.is_set()

    async def wait_connected(self) -> None:
        """Wait until the channel is up."""
        await self._connected.wait()

    async def run(self) -> None:
        """Connect, serve and reconnect until :meth:`close`. Raises on a fatal refusal."""
        delay = 0.1
        announced = False
        while not self._closing:
            try:
                async with connect(
                    self.url,
                    additional_headers=self._headers,
                    max_size=None,
                    compression=None,
                    open_timeout=5,
                    ping_interval=20,
                    ping_timeout=20,
                    close_timeout=2,
                ) as ws:
                    await self._serve(ws)
                    delay = 0.1
            except FatalChannelError:
                raise
            except (OSError, ConnectionClosed, InvalidHandshake, TimeoutError) as exc:
                if not announced or self.connected:
                    log.warning(
                        "orchestrator at %s unreachable (%s); retrying",
                        self.url,
                        str(exc) or type(exc).__name__,
                    )
                    announced = True
            except InvalidURI as exc:
                raise FatalChannelError(f"invalid orchestrator URL {self.url!r}: {exc}") from exc
            finally:
                self._ws = None
                self._connected.clear()
            if self.closing:
                break
            self.reconnects += 1
            self._url_index = (self._url_index + 1) % len(self.urls)
            if self._url_index != 0:
                continue  # another orchestrator is configured: try it at once
            # Jittered exponential backoff: many workers must not reconnect in lock-step.
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 2.0)

    async def _serve(self, ws: ClientConnection) -> None:
        await ws.send(self._make_hello().model_dump_json())
        welcome = orchestrator_message_adapter.validate_json(await ws.recv())
        if isinstance(welcome, Goodbye):
            if welcome.fatal:
                raise FatalChannelError(f"the orchestrator refused this worker: {welcome.reason}")
            raise ConnectionError(welcome.reason)
        if not isinstance(welcome, Welcome):
            raise FatalChannelError(f"expected 'welcome', got {welcome.type!r}")
        self.heartbeat_ms = welcome.heartbeat_ms
        self.features = frozenset(welcome.features)
        self._ws = ws
        self._on_welcome(welcome)
        self._connected.set()
        log.info("connected to %s as %s", self.url, welcome.worker_id)
        # Re-send every write the orchestrator never acknowledged, oldest first.
        for req in sorted(self._outbox):
            await self._send(self._outbox[req].message)
        heartbeat = asyncio.create_task(self._heartbeats(ws))
        try:
            async for raw in ws:
                self._dispatch(raw)
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat

    def _dispatch(self, raw: str | bytes) -> None:
        try:
            message = orchestrator_message_adapter.validate_json(raw)
        except pydantic.ValidationError as exc:
            log.error("unreadable message from the orchestrator: %s", exc)
            return
        if isinstance(message, Ack):
            pending = self._outbox.get(message.req)
            if pending is None:
                return
            if message.code == "error":
                # The orchestrator could not write (its database may be down): try again soon.
                log.warning("write %d not applied (%s); retrying", message.req, message.message)
                asyncio.get_running_loop().call_later(0.5, self._resend, message.req)
                return
            del self._outbox[message.req]
            if not pending.future.done():
                pending.future.set_result(message)
        elif isinstance(message, Task):
            self._on_task(message)
        elif isinstance(message, Cancel):
            self._on_cancel(message)
        elif isinstance(message, Goodbye):
            log.warning("orchestrator says goodbye: %s", message.reason)
            if message.fatal:
                self._closing = True

    def _resend(self, req: int) -> None:
        pending = self._outbox.get(req)
        if pending is not None and self.connected:
            task = asyncio.ensure_future(self._send(pending.message))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _heartbeats(self, ws: ClientConnection) -> None:
        beat = Heartbeat().model_dump_json()
        while True:
            await asyncio.sleep(self.heartbeat_ms / 1000 / 2)
            async with self._send_lock:
                await ws.send(beat)

    async def _send(self, message: Write | Drain) -> None:
        ws = self._ws
        if ws is None:
            return  # stays in the outbox; sent again after the next welcome
        try:
            async with self._send_lock:
                await ws.send(message.model_dump_json())
        except ConnectionClosed:
            pass

    async def post(self, message: Emit) -> bool:
        """Send a fire-and-forget message now; False if it was dropped instead.

        Dropped when the channel is down (nothing is kept for after a reconnect) or
        when the orchestrator is too old to accept it (it would refuse the whole
        connection). Never raises.
        """
        ws = self._ws
        if ws is None or message.type not in self.features:
            return False
        text = message.model_dump_json()
        try:
            async with self._send_lock:
                await ws.send(text)
        except Exception as exc:  # a transport problem must not reach the workflow
            log.debug("could not send %s: %s", message.type, exc)
            return False
        return True

    def next_req(self) -> int:
        """A fresh request id."""
        self._next_req += 1
        return self._next_req

    async def request(self, build: Callable[[int], Write]) -> Ack:
        """Send a write and wait for its acknowledgement (across reconnects)."""
        message = build(self.next_req())
        future: asyncio.Future[Ack] = asyncio.get_running_loop().create_future()
        self._outbox[message.req] = _Pending(message, future)
        await self._send(message)
        try:
            return await future
        finally:
            self._outbox.pop(message.req, None)

    async def drain(self) -> None:
        """Ask for no more tasks."""
        await self._send(Drain())

    async def close(self) -> None:
        """Stop reconnecting and close the socket."""
        self._closing = True
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close()
