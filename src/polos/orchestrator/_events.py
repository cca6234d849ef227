"""Live event fan-out to streams, and the timer loop (sleeps, wait timeouts, trigger batches)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence

from polos.protocol import now_ms
from polos.storage import Fired, FireDueOp, Store, WriteBatcher

log = logging.getLogger("polos.orchestrator")


class EventHub:
    """Wakes the event streams (SSE) of a topic when events are published on it.

    A wake-up only says "look again": streams read the log from their last
    ``seq``, so a missed or duplicated wake-up cannot lose or repeat events.
    """

    def __init__(self) -> None:
        self._subscribers: dict[tuple[str, str], set[asyncio.Event]] = {}

    def subscribe(self, project_id: str, topic: str) -> asyncio.Event:
        """An event set whenever ``topic`` gets new events (clear it before each read)."""
        signal = asyncio.Event()
        self._subscribers.setdefault((project_id, topic), set()).add(signal)
        return signal

    def unsubscribe(self, project_id: str, topic: str, signal: asyncio.Event) -> None:
        """Forget a signal made by :meth:`subscribe`."""
        subscribers = self._subscribers.get((project_id, topic))
        if subscribers is not None:
            subscribers.discard(signal)
            if not subscribers:
                del self._subscribers[(project_id, topic)]

    def notify(self, project_id: str, topic: str) -> None:
        """New events on ``topic``."""
        for signal in self._subscribers.get((project_id, topic), ()):
            signal.set()

    def notify_all(self) -> None:
        """Something may have been missed (a listener reconnected): every stream looks again."""
        for subscribers in self._subscribers.values():
            for signal in subscribers:
                signal.set()

    def __len__(self) -> int:
        return sum(len(s) for s in self._subscribers.values())


StopRunning = Callable[[Sequence[tuple[str | None, str, str]]], Awaitable[None]]
"""Tells workers to stop executions: (worker id, execution id, reason) each."""


class DueLoop:
    """A loop that sleeps until the earliest due time in the database, then fires.

    It sleeps at most :attr:`MAX_SLEEP_S` (so that work registered through another
    orchestrator is noticed) and is woken early by :meth:`wake`. Subclasses say when
    the next item falls due and how to fire; :meth:`_fire` returns ``None`` to look
    again at once, or the time (epoch ms) to sleep until.
    """

    MAX_SLEEP_S = 1.0
    NAME = "due-loop"

    def __init__(self) -> None:
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the loop."""
        self._task = asyncio.create_task(self._run(), name=f"polos-{self.NAME}")

    async def stop(self) -> None:
        """Stop the loop."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def wake(self) -> None:
        """Something may now fall due earlier than the loop thinks."""
        self._wake.set()

    async def _next_due(self) -> int | None:
        raise NotImplementedError

    async def _fire(self, now: int) -> int | None:
        raise NotImplementedError

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                due = await self._next_due()
                now = now_ms()
                if due is not None and due <= now:
                    due = await self._fire(now)
                    if due is None:
                        continue
            except Exception as exc:
                log.warning("%s failed: %s", self.NAME, exc)
                due, now = None, now_ms()
                await asyncio.sleep(0.5)
            timeout = self.MAX_SLEEP_S if due is None else min(self.MAX_SLEEP_S, (due - now) / 1000)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.001, timeout))


class Timers(DueLoop):
    """Fires what falls due: sleeps, wait timeouts, event-trigger batch timeouts, run timeouts.

    It sleeps until the earliest due time in the database (at most one second,
    so that timers registered through another orchestrator are noticed too) and
    is woken early when this orchestrator registers a new one. Firing is one
    transaction that locks the rows it ends (``SKIP LOCKED`` on PostgreSQL), so
    several orchestrators never fire one timer twice. Executions that ran out of
    their run timeout while a worker ran them are stopped on that worker
    (``on_stop``), like a cancel.
    """

    NAME = "timers"

    def __init__(
        self, store: Store, batcher: WriteBatcher, on_stop: StopRunning | None = None
    ) -> None:
        super().__init__()
        self._store = store
        self._batcher = batcher
        self._on_stop = on_stop
        self.fired = 0

    async def _next_due(self) -> int | None:
        return await self._store.next_due()

    async def _fire(self, now: int) -> int | None:
        fired = await self._batcher.submit(FireDueOp())
        if isinstance(fired, Fired):
            self.fired += fired.waits + fired.started + fired.timed_out
            if fired.timed_out:
                log.info("%d execution(s) ran out of their run timeout", fired.timed_out)
            if fired.stop and self._on_stop is not None:
                await self._on_stop(fired.stop)
        return None
