"""Live events from running executions (``ctx.emit``, the channel's ``Emit`` message).

An emit is not a write of the execution: nothing is acknowledged or re-sent, and
the step log does not change. Each item becomes an ordinary event of its topic's
log (``source_execution_id`` set, no idempotency key), written through the
group-commit batcher like any publish, so streams, triggers and event waits see it.

Fencing: a message is kept only if, when it arrives, the sending worker's session
runs the execution under the message's epoch (the orchestrator's view of the lease,
which it updates when an attempt ends, is cancelled, times out, is superseded, or
its worker's lease lapses here). The database is asked too, at most every
``verify_ms`` per execution: the execution must be ``running`` on that worker. That
catches a worker whose lease another orchestrator expired while it was silent (it
was silent for a whole lease, longer than ``verify_ms``). The check and the write
are not one transaction: an emit that races its lease being lost may still land.

Ordering: one task per execution writes everything that waits for it, one
``PublishOp`` per item in arrival order, then looks again. The gateway calls
:meth:`EmitWriter.settled` before an end-of-attempt write (and before a step that
publishes an event), so an execution's emits are in the log before its result.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from polos.protocol import Emit, now_ms
from polos.storage import Published, PublishOp, Store, WriteBatcher, dumps

from ._events import EventHub

log = logging.getLogger("polos.orchestrator")

MAX_PENDING_ITEMS = 10_000
"""Items of one execution that may wait to be written; more are dropped (the database lags)."""


class EmitSender(Protocol):
    """What the writer needs to know about the worker session an emit came from."""

    @property
    def worker_id(self) -> str:
        """The worker's id."""

    @property
    def project_id(self) -> str:
        """The worker's project."""

    @property
    def running(self) -> dict[str, int]:
        """Executions the worker runs now (execution id → lease epoch)."""

    @property
    def closed(self) -> bool:
        """Whether the session is over."""


@dataclass(eq=False)
class _Stream:
    """What waits to be written for one execution, and the task writing it."""

    project_id: str
    worker_id: str
    pending: list[Emit] = field(default_factory=list)
    items: int = 0
    task: asyncio.Task[None] | None = None


class EmitWriter:
    """Appends the live events of this orchestrator's workers to their topics, in order."""

    def __init__(
        self,
        store: Store,
        batcher: WriteBatcher,
        hub: EventHub,
        *,
        verify_ms: int,
        wake: Callable[[], None] = lambda: None,
    ) -> None:
        self._store = store
        self._batcher = batcher
        self._hub = hub
        self._verify_ms = verify_ms
        self._wake = wake
        self._streams: dict[str, _Stream] = {}
        self._verified: dict[str, tuple[str, int]] = {}
        """execution id → (worker id, when the database last said it runs there)."""
        self.written = 0
        self.dropped = 0

    def accept(self, sender: EmitSender, message: Emit) -> None:
        """Queue a message for writing, or drop it if its sender is fenced off.

        Called as each message arrives, before later messages of the same socket are
        looked at: the lease check sees the session as the worker saw it when it sent.
        """
        execution_id = message.execution_id
        if sender.closed or sender.running.get(execution_id) != message.epoch:
            self._drop(message, "the sender does not hold the lease")
            return
        stream = self._streams.get(execution_id)
        if stream is None:
            stream = self._streams[execution_id] = _Stream(sender.project_id, sender.worker_id)
        if stream.items + len(message.items) > MAX_PENDING_ITEMS:
            self._drop(message, "too many are waiting to be written", warn=True)
            return
        stream.pending.append(message)
        stream.items += len(message.items)
        if stream.task is None:
            stream.task = asyncio.create_task(
                self._write(execution_id, stream), name=f"polos-emit-{execution_id}"
            )

    async def settled(self, execution_id: str) -> None:
        """Wait until every emit of ``execution_id`` received so far was written (or dropped)."""
        stream = self._streams.get(execution_id)
        if stream is not None and stream.task is not None:
            # Shielded: a cancelled caller must not cancel the writes of the others.
            await asyncio.shield(stream.task)

    async def stop(self) -> None:
        """Stop writing (what still waits is dropped: emits are best effort)."""
        tasks = [s.task for s in self._streams.values() if s.task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # ------------------------------------------------------------------ writing

    async def _write(self, execution_id: str, stream: _Stream) -> None:
        try:
            while stream.pending:
                batch, stream.pending, stream.items = stream.pending, [], 0
                try:
                    if await self._still_running(execution_id, stream):
                        await self._publish(execution_id, stream.project_id, batch)
                    else:
                        for message in batch:
                            self._drop(message, "the execution no longer runs on its worker")
                except Exception as exc:  # the database is unreachable: drop, do not retry
                    items = sum(len(m.items) for m in batch)
                    self.dropped += items
                    log.warning(
                        "execution %s: %d live event(s) dropped: %s", execution_id, items, exc
                    )
        finally:
            if self._streams.get(execution_id) is stream:
                del self._streams[execution_id]

    async def _still_running(self, execution_id: str, stream: _Stream) -> bool:
        now = now_ms()
        seen = self._verified.get(execution_id)
        if seen is not None and seen[0] == stream.worker_id and now - seen[1] < self._verify_ms:
            return True
        execution = await self._store.get_execution(stream.project_id, execution_id)
        if execution is None or execution.status != "running":
            return False
        if execution.worker_id != stream.worker_id:
            return False
        if len(self._verified) > 4096:  # forget executions not heard from lately
            self._verified = {
                k: v for k, v in self._verified.items() if now - v[1] < self._verify_ms
            }
        self._verified[execution_id] = (stream.worker_id, now)
        return True

    async def _publish(self, execution_id: str, project_id: str, batch: list[Emit]) -> None:
        ops = [
            PublishOp(
                project_id=project_id,
                topic=message.topic,
                data_json=dumps(item),
                source_execution_id=execution_id,
            )
            for message in batch
            for item in message.items
        ]
        # gather starts the submits in list order and each queues its op before its first
        # await, so the batcher applies them in emit order (and each topic's seq follows).
        results = await asyncio.gather(*(self._batcher.submit(op) for op in ops))
        self.written += len(ops)
        topics = {op.topic for op in ops}
        for topic in sorted(topics):
            self._hub.notify(project_id, topic)
        # A triggered workflow is new work. (A trigger batch whose timeout an emit started
        # is found by the timer loop's periodic look, within a second.)
        if any(isinstance(r, Published) and r.triggered for r in results):
            self._wake()

    def _drop(self, message: Emit, reason: str, *, warn: bool = False) -> None:
        self.dropped += len(message.items)
        log.log(
            logging.WARNING if warn else logging.DEBUG,
            "execution %s: %d live event(s) on %r dropped: %s",
            message.execution_id,
            len(message.items),
            message.topic,
            reason,
        )
