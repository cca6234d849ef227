"""The schedule loop: starts the executions of due cron slots.

It sleeps until the earliest ``next_at`` of the active schedules (at most one
second, so that schedules made through another orchestrator are noticed too) and
is woken early when this orchestrator creates, changes or resumes a schedule.
Firing is one transaction that locks the due rows (``SKIP LOCKED`` on
PostgreSQL), so several orchestrators never start one slot twice.
"""

from __future__ import annotations

from collections.abc import Callable

from polos.storage import ScheduleStore

from ._events import DueLoop


class ScheduleLoop(DueLoop):
    """Fires due schedule slots; one per orchestrator."""

    NAME = "schedules"
    BUSY_PAUSE_S = 0.05
    """Pause when due rows were all locked by another orchestrator (it is firing them)."""

    def __init__(self, schedules: ScheduleStore, on_started: Callable[[], None]) -> None:
        super().__init__()
        self._schedules = schedules
        self._on_started = on_started
        self.started = 0

    async def _next_due(self) -> int | None:
        return await self._schedules.next_due()

    async def _fire(self, now: int) -> int | None:
        fired = await self._schedules.fire_due(now=now)
        if fired.started:
            self.started += len(fired.started)
            self._on_started()
        if fired.schedules:
            return None
        return now + round(self.BUSY_PAUSE_S * 1000)
