"""The contract between the SDK (code inside workflows) and the worker that runs it.

The SDK never talks to the network itself: it asks its :class:`StepRecorder`
to make a step record durable, or to park the execution at a wait. The worker
implements it over its channel to the orchestrator (Temporal's runtime
pattern), tests implement it in memory.
"""

from __future__ import annotations

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

    async def park(self, request: ParkRequest) -> None:
        """Record a wait step and park the execution (same errors as :meth:`record_effect`)."""
