"""Run a workflow attempt against an in-memory step log (unit tests, determinism checks)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from polos.protocol import ChildSpec, PublishSpec, StepRecord, WaitKind
from polos.sdk import AttemptInput, AttemptOutcome, LeaseLost, ParkRequest, Workflow, run_attempt


class MemoryRecorder:
    """A :class:`~polos.sdk.StepRecorder` that keeps records in a list.

    Attributes:
        records: every record made durable so far, in order.
        fence_after: raise :class:`~polos.sdk.LeaseLost` once this many records exist
            (simulates losing the lease mid-run); ``None`` never fences.
        grant_acquires: whether ``ctx.step.acquire`` gets its units at once (True) or
            parks the attempt like a rate limit without room (False).
        emitted: every ``(topic, data)`` live event emitted with ``ctx.emit``, in order
            (not records: they are not part of the step log).
    """

    def __init__(self, fence_after: int | None = None, *, grant_acquires: bool = True) -> None:
        self.grant_acquires = grant_acquires
        self.records: list[StepRecord] = []
        self.fence_after = fence_after
        self.published: list[PublishSpec] = []
        self.children: list[ChildSpec] = []
        self.parked: ParkRequest | None = None
        self.emitted: list[tuple[str, Any]] = []

    async def record(self, records: list[StepRecord]) -> None:
        """Keep ``records`` (or refuse them when fenced)."""
        if self.fence_after is not None and len(self.records) + len(records) > self.fence_after:
            raise LeaseLost("fenced by MemoryRecorder")
        self.records.extend(records)

    async def record_effect(
        self,
        record: StepRecord,
        *,
        publish: PublishSpec | None = None,
        children: Sequence[ChildSpec] = (),
    ) -> Any:
        """Keep the record and its effect; a publish gets seq = how many were published.

        Like the orchestrator, a publish step is recorded with the event's metadata
        as its output.
        """
        if publish is None:
            await self.record([record])
            self.children.extend(children)
            return None
        meta = {
            "id": f"event-{len(self.published) + 1}",
            "topic": publish.topic,
            "seq": len(self.published) + 1,
            "created_at": record.started_at or 0,
        }
        await self.record([record.model_copy(update={"output": meta})])
        self.published.append(publish)
        return meta

    async def emit(self, topic: str, data: list[Any]) -> None:
        """Keep the live events in :attr:`emitted` (they never fence: emits are not writes)."""
        self.emitted.extend((topic, item) for item in data)

    async def park(self, request: ParkRequest) -> Any:
        """Remember the wait the attempt ended at (see :attr:`parked`).

        An acquire step is granted at once when :attr:`grant_acquires` is set (the
        default), as the orchestrator does when the rate limit has room.
        """
        if self.fence_after is not None and len(self.records) >= self.fence_after:
            raise LeaseLost("fenced by MemoryRecorder")
        if request.spec.kind == WaitKind.ACQUIRE and self.grant_acquires:
            data = request.spec.data or {}
            granted = {
                "limit": data.get("limit"),
                "units": data.get("units", 1),
                "key": data.get("key", ""),
                "granted_at": request.started_at,
            }
            self.records.append(
                StepRecord(
                    key=request.key,
                    seq=request.seq,
                    kind=request.kind,
                    output=granted,
                    started_at=request.started_at,
                    completed_at=request.started_at,
                )
            )
            return {"granted": granted}
        self.children.extend(request.children)
        self.parked = request
        return None


async def run_once(
    workflow: Workflow[Any],
    payload: Any = None,
    *,
    history: Sequence[StepRecord] = (),
    recorder: MemoryRecorder | None = None,
    execution_id: str = "test-execution",
    attempt: int = 1,
    state: Any = None,
    trigger: Any = None,
) -> tuple[AttemptOutcome, MemoryRecorder]:
    """Run one attempt of ``workflow`` in this process, with ``history`` as the recorded log."""
    recorder = recorder or MemoryRecorder()
    outcome = await run_attempt(
        workflow,
        AttemptInput(
            execution_id=execution_id,
            attempt=attempt,
            payload=payload,
            history=list(history),
            state=state,
            has_state=state is not None,
            trigger=trigger,
        ),
        recorder,
    )
    return outcome, recorder


async def replay(
    workflow: Workflow[Any], payload: Any, history: Sequence[StepRecord]
) -> AttemptOutcome:
    """Replay ``workflow`` over a recorded ``history`` (e.g. from ``polos executions show --json``).

    Use it in your own tests to check that changed workflow code still replays
    old executions: a :class:`~polos.NonDeterminismError` shows up as a failed
    outcome whose ``error.type`` is ``polos.errors.NonDeterminismError``.
    """
    outcome, _ = await run_once(workflow, payload, history=history, attempt=2)
    return outcome
