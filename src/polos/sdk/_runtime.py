"""The contract between the SDK (code inside workflows) and the worker that runs it.

The SDK never talks to the network itself: it asks its :class:`StepRecorder`
to make a step record durable, or to park the execution at a wait. The worker
implements it over its channel to the orchestrator (Temporal's runtime
pattern), tests implement it in memory.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from polos.protocol import ChildSpec, PublishSpec, StepKind, StepRecord, WaitSpec


class LeaseLost(BaseException):
    """This worker no longer owns the execution; stop running it at once.

    A ``BaseException`` so that user code's ``except Exception`` cannot keep a
    fenced-off execution running.
    """


class WaitPending(BaseException):
    """The execution is parked at a wait step: unwind the workflow, the attempt is over.

    Raised by ``ctx.step.suspend/sleep/wait_for_event/invoke_and_wait`` once the
    orchestrator has recorded the wait. A ``BaseException`` so that user code's
    ``except Exception`` does not catch it (``finally`` blocks still run). The
    execution continues in a later attempt, on any worker, when the wait ends.
    """


class CancelSignal:
    """Tells a running attempt that its execution was cancelled (or ran out of its run timeout).

    The worker sets it, then cancels the attempt's task: the step being awaited
    raises :class:`~polos.ExecutionCancelled` (instead of a bare
    ``asyncio.CancelledError``), and so does every later ``ctx.step`` call. A
    synchronous workflow (which runs in a thread that cannot be interrupted)
    therefore stops at its next step call.
    """

    def __init__(self) -> None:
        self.reason: str | None = None
        self._calls: set[concurrent.futures.Future[Any]] = set()

    @property
    def cancelled(self) -> bool:
        """Whether :meth:`cancel` was called."""
        return self.reason is not None

    def cancel(self, reason: str) -> None:
        """Mark the attempt cancelled and stop the steps a synchronous workflow is waiting on."""
        self.reason = reason
        for call in list(self._calls):
            call.cancel()

    def track(self, call: concurrent.futures.Future[Any]) -> None:
        """Remember a step call made from a synchronous workflow's thread (until it is done)."""
        self._calls.add(call)
        call.add_done_callback(self._calls.discard)
        if self.reason is not None:
            call.cancel()


@dataclass(frozen=True, slots=True)
class ParkRequest:
    """A wait step to record; the execution then holds no worker until it ends."""

    key: str
    seq: int
    kind: StepKind
    started_at: int
    spec: WaitSpec
    children: Sequence[ChildSpec] = ()
    has_state: bool = False
    state: Any = None


class StepRecorder(Protocol):
    """Makes step records durable for one execution attempt."""

    async def record(self, records: list[StepRecord]) -> None:
        """Return once every record is durable; raise :class:`LeaseLost` if fenced."""

    async def record_effect(
        self,
        record: StepRecord,
        *,
        publish: PublishSpec | None = None,
        children: Sequence[ChildSpec] = (),
    ) -> Any:
        """Record a step together with its effect (publish an event, start children).

        Returns what the effect produced (the published event's metadata).

        Raises:
            LeaseLost: the execution moved to another worker.
            WorkflowNotFoundError: a child's workflow is not registered.
        """

    async def park(self, request: ParkRequest) -> Any:
        """Record a wait step and park the execution (same errors as :meth:`record_effect`).

        Returns what the orchestrator answered: ``{"granted": ...}`` when an acquire
        step got its units at once (the execution was not parked), else ``None``.
        """

    async def emit(self, topic: str, data: list[Any]) -> None:
        """Publish ``data`` (JSON-ready items, in order) on ``topic`` as live events.

        Best effort and not recorded: the items are not part of the step log and are
        not re-sent after a reconnect. Return without waiting for delivery; never
        raise for transport problems (log and drop). The caller (``ctx.emit``) has
        validated the topic and made the items JSON-compatible already.
        """
