"""In-process notification of execution status changes (for long-polling result calls)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from polos.protocol import TERMINAL_STATUSES
from polos.storage import Transition


class Waiters:
    """Futures keyed by execution id, resolved when the execution finishes."""

    def __init__(self) -> None:
        self._waiting: dict[str, set[asyncio.Future[str]]] = {}

    def register(self, ids: Sequence[str]) -> list[asyncio.Future[str]]:
        """Futures resolved when each of ``ids`` finishes.

        Register *before* reading the executions' status: a finish that lands
        between the read and the registration would otherwise go unnoticed.
        """
        loop = asyncio.get_running_loop()
        futures = []
        for execution_id in ids:
            future: asyncio.Future[str] = loop.create_future()
            self._waiting.setdefault(execution_id, set()).add(future)
            futures.append(future)
        return futures

    def unregister(self, ids: Sequence[str], futures: Sequence[asyncio.Future[str]]) -> None:
        """Forget futures made by :meth:`register`."""
        for execution_id, future in zip(ids, futures, strict=True):
            waiting = self._waiting.get(execution_id)
            if waiting is not None:
                waiting.discard(future)
                if not waiting:
                    del self._waiting[execution_id]

    async def wait(self, futures: Sequence[asyncio.Future[str]], timeout: float) -> None:
        """Wait until every future is resolved, or ``timeout`` seconds."""
        pending = [f for f in futures if not f.done()]
        if pending and timeout > 0:
            await asyncio.wait(pending, timeout=timeout)

    def notify(self, transitions: Sequence[Transition]) -> None:
        """Resolve the waiters of every execution that reached a terminal status."""
        for transition in transitions:
            if transition.status not in TERMINAL_STATUSES:
                continue
            for future in self._waiting.get(transition.execution_id, ()):
                if not future.done():
                    future.set_result(transition.status)

    def ids(self) -> list[str]:
        """Executions someone is waiting for."""
        return list(self._waiting)

    def __len__(self) -> int:
        return sum(len(f) for f in self._waiting.values())
