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

    async def wait(self, execution_id: str, timeout: float) -> str | None:
        """Wait up to ``timeout`` seconds for ``execution_id`` to finish; its status or ``None``."""
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(execution_id, set()).add(future)
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            return None
        finally:
            futures = self._waiting.get(execution_id)
            if futures is not None:
                futures.discard(future)
                if not futures:
                    del self._waiting[execution_id]

    def notify(self, transitions: Sequence[Transition]) -> None:
        """Resolve the waiters of every execution that reached a terminal status."""
        for transition in transitions:
            if transition.status not in TERMINAL_STATUSES:
                continue
            for future in self._waiting.get(transition.execution_id, ()):
                if not future.done():
                    future.set_result(transition.status)

    def __len__(self) -> int:
        return sum(len(f) for f in self._waiting.values())
