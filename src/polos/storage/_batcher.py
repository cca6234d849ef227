"""Group commit: concurrent writes share one transaction.

Callers ``await batcher.submit(op)``; a single task drains everything queued
while the previous batch was being written and applies it as one batch. Under
no load a write goes out alone at once (no added latency); under load, batches
grow by themselves and throughput stops paying one transaction per write.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence

from ._ops import BatchOutcome, Transition, WriteOp, WriteResult
from ._store import Store

log = logging.getLogger("polos.storage")


class WriteBatcher:
    """Serialises and batches writes to a :class:`Store`."""

    def __init__(
        self,
        store: Store,
        *,
        max_batch: int = 512,
        on_transitions: Callable[[Sequence[Transition]], None] | None = None,
        on_batch: Callable[[Sequence[WriteOp], BatchOutcome, float], None] | None = None,
    ) -> None:
        self._store = store
        self._max_batch = max_batch
        self._on_transitions = on_transitions
        # Metrics: told (ops, outcome, seconds) of every committed batch; must be cheap.
        self._on_batch = on_batch
        self._pending: list[tuple[WriteOp, asyncio.Future[WriteResult]]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.batches = 0
        self.ops = 0
        self.busy_seconds = 0.0

    def start(self) -> None:
        """Start the writer task."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="polos-write-batcher")

    async def stop(self) -> None:
        """Finish what is queued, then stop."""
        task, self._task = self._task, None
        if task is None:
            return
        while self._pending:
            await asyncio.sleep(0.005)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass

    def describe(self) -> str:
        """Counters for logs: batches, ops, mean batch size and time."""
        if not self.batches:
            return "no writes"
        return (
            f"{self.ops} writes in {self.batches} batches "
            f"(mean {self.ops / self.batches:.1f} per batch, "
            f"{1000 * self.busy_seconds / self.batches:.2f} ms per batch)"
        )

    async def submit(self, op: WriteOp) -> WriteResult:
        """Queue ``op`` and wait until its batch is committed. Raises the op's error, if any."""
        future: asyncio.Future[WriteResult] = asyncio.get_running_loop().create_future()
        self._pending.append((op, future))
        self._wake.set()
        return await future

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch = self._pending[: self._max_batch]
                del self._pending[: self._max_batch]
                await self._write(batch)

    async def _write(self, batch: list[tuple[WriteOp, asyncio.Future[WriteResult]]]) -> None:
        started = time.perf_counter()
        try:
            outcome = await self._store.apply_batch([op for op, _ in batch])
        except Exception as exc:  # the store isolates per-op errors; this is a broken connection
            log.warning("write batch of %d failed: %s", len(batch), exc)
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        self.batches += 1
        self.ops += len(batch)
        elapsed = time.perf_counter() - started
        self.busy_seconds += elapsed
        for (_, future), result in zip(batch, outcome.results, strict=True):
            if future.done():
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)
        if outcome.transitions and self._on_transitions is not None:
            self._on_transitions(outcome.transitions)
        if self._on_batch is not None:
            self._on_batch([op for op, _ in batch], outcome, elapsed)
