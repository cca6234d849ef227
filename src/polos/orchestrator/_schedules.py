"""The schedule loop: starts the executions of due cron slots.

It sleeps until the earliest ``next_at`` of the active schedules (at most one
second, so that schedules made through another orchestrator are noticed too) and
is woken early when this orchestrator creates, changes or resumes a schedule.
Firing is one transaction that locks the due rows (``SKIP LOCKED`` on
PostgreSQL), so several orchestrators never start one slot twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from polos.protocol import now_ms
from polos.storage import ScheduleStore

log = logging.getLogger("polos.orchestrator")


class ScheduleLoop:
    """Fires due schedule slots; one per orchestrator."""

    MAX_SLEEP_S = 1.0
    BUSY_PAUSE_S = 0.05
    """Pause when due rows were all locked by another orchestrator (it is firing them)."""

    def __init__(self, schedules: ScheduleStore, on_started: Callable[[], None]) -> None:
        self._schedules = schedules
        self._on_started = on_started
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.started = 0

    def start(self) -> None:
        """Start the loop."""
        self._task = asyncio.create_task(self._run(), name="polos-schedules")

    async def stop(self) -> None:
        """Stop the loop."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def wake(self) -> None:
        """A schedule may now fall due earlier than the loop thinks."""
        self._wake.set()

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                due = await self._schedules.next_due()
                now = now_ms()
                if due is not None and due <= now:
                    fired = await self._schedules.fire_due(now=now)
                    if fired.started:
                        self.started += len(fired.started)
                        self._on_started()
                    if fired.schedules:
                        continue
                    due = now + round(self.BUSY_PAUSE_S * 1000)
            except Exception as exc:
                log.warning("schedule loop failed: %s", exc)
                due, now = None, now_ms()
                await asyncio.sleep(0.5)
            timeout = self.MAX_SLEEP_S if due is None else min(self.MAX_SLEEP_S, (due - now) / 1000)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.001, timeout))
