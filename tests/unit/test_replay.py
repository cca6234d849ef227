"""Replay: recorded steps return their recorded outcome without running again."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pydantic
import pytest

from polos import RetryPolicy, StepExecutionError, WorkflowContext, workflow
from polos.protocol import ErrorInfo, StepKind, StepRecord
from polos.sdk import AttemptInput, LeaseLost, run_attempt
from polos.testing import MemoryRecorder, replay, run_once

NO_RETRY = RetryPolicy(max_attempts=1)


class Receipt(pydantic.BaseModel):
    """A step output that must come back as a model on replay (module level: importable)."""

    order_id: str
    amount_cents: int


def _by_key(records: list[StepRecord]) -> dict[str, StepRecord]:
    return {r.key: r for r in records}


# ---------------------------------------------------------------------- recorded results


async def test_replay__returns_recorded_result_without_running_step() -> None:
    calls: list[int] = []

    def charge(amount: int) -> int:
        calls.append(amount)
        return amount * 2

    @workflow
    async def pay(ctx: WorkflowContext, amount: int) -> int:
        return await ctx.step.run("charge", charge, amount)

    first, recorder = await run_once(pay, 21)
    assert first.completed
    assert first.result == 42
    assert calls == [21]
    assert [(r.key, r.kind, r.output) for r in recorder.records] == [("charge", StepKind.RUN, 42)]

    second = await replay(pay, 21, recorder.records)
    assert second.completed
    assert second.result == first.result
    assert calls == [21], "the step function ran again on replay"


async def test_replay__uses_recorded_output_not_a_fresh_call() -> None:
    calls: list[str] = []

    def fetch() -> int:
        calls.append("fetch")
        return 1

    @workflow
    async def wf(ctx: WorkflowContext) -> int:
        return await ctx.step.run("fetch", fetch)

    history = [StepRecord(key="fetch", seq=1, kind=StepKind.RUN, output=99)]
    outcome = await replay(wf, None, history)
    assert outcome.completed
    assert outcome.result == 99
    assert calls == []


async def test_replay__replayed_steps_are_not_recorded_again() -> None:
    @workflow
    async def wf(ctx: WorkflowContext) -> int:
        return await ctx.step.run("one", lambda: 1)

    _, first = await run_once(wf)
    again = MemoryRecorder()
    outcome, _ = await run_once(wf, history=first.records, recorder=again, attempt=2)
    assert outcome.completed
    assert again.records == []


async def test_replay__new_steps_after_history_continue_the_seq() -> None:
    calls: list[str] = []

    def second() -> str:
        calls.append("second")
        return "b"

    @workflow
    async def wf(ctx: WorkflowContext) -> list[str]:
        a = await ctx.step.run("first", lambda: "fresh-a")
        b = await ctx.step.run("second", second)
        return [a, b]

    history = [StepRecord(key="first", seq=7, kind=StepKind.RUN, output="a")]
    outcome, recorder = await run_once(wf, history=history, attempt=2)
    assert outcome.result == ["a", "b"]
    assert calls == ["second"]
    assert [(r.key, r.seq) for r in recorder.records] == [("second", 8)]


async def test_replay__model_output_rebuilt_by_return_annotation() -> None:
    calls: list[str] = []
    seen: list[Any] = []

    def make_receipt(order_id: str) -> Receipt:
        calls.append(order_id)
        return Receipt(order_id=order_id, amount_cents=1250)

    @workflow
    async def wf(ctx: WorkflowContext, order_id: str) -> dict[str, Any]:
        receipt = await ctx.step.run("receipt", make_receipt, order_id)
        seen.append(receipt)
        return receipt.model_dump()

    first, recorder = await run_once(wf, "o-1")
    assert first.completed
    (record,) = recorder.records
    assert record.output == {"order_id": "o-1", "amount_cents": 1250}

    # Without the recorded class name, only the return annotation can rebuild the model.
    history = [record.model_copy(update={"output_type": None})]
    second = await replay(wf, "o-1", history)
    assert second.completed, second.error
    assert calls == ["o-1"]
    assert type(seen[1]) is Receipt
    assert seen[1] == seen[0]
    assert second.result == first.result


async def test_replay__model_output_rebuilt_by_recorded_output_type() -> None:
    calls: list[str] = []
    seen: list[Any] = []

    def make_receipt(order_id):  # no annotation on purpose
        calls.append(order_id)
        return Receipt(order_id=order_id, amount_cents=10)

    @workflow
    async def wf(ctx: WorkflowContext, order_id: str) -> dict[str, Any]:
        receipt = await ctx.step.run("receipt", make_receipt, order_id)
        seen.append(receipt)
        return receipt.model_dump()

    first, recorder = await run_once(wf, "o-2")
    assert first.completed
    (record,) = recorder.records
    assert record.output_type == f"{__name__}:Receipt"

    second = await replay(wf, "o-2", recorder.records)
    assert second.completed, second.error
    assert calls == ["o-2"]
    assert type(seen[1]) is Receipt
    assert seen[1] == seen[0]


async def test_replay__unannotated_output_without_type_stays_plain_json() -> None:
    seen: list[Any] = []

    @workflow
    async def wf(ctx: WorkflowContext) -> None:
        seen.append(await ctx.step.run("data", lambda: {"a": 1}))

    history = [StepRecord(key="data", seq=1, kind=StepKind.RUN, output={"a": 2})]
    outcome = await replay(wf, None, history)
    assert outcome.completed
    assert seen == [{"a": 2}]


# ---------------------------------------------------------------------- recorded errors


async def test_replay__recorded_error_reraises_without_calling_step() -> None:
    calls: list[int] = []
    caught: list[StepExecutionError] = []

    def declined() -> None:
        calls.append(1)
        raise ValueError("card declined")

    @workflow
    async def wf(ctx: WorkflowContext) -> str:
        try:
            await ctx.step.run("charge", declined, retry_policy=NO_RETRY)
        except StepExecutionError as exc:
            caught.append(exc)
            return "handled"
        return "not reached"

    first, recorder = await run_once(wf)
    assert first.completed
    assert first.result == "handled"
    (record,) = recorder.records
    assert record.error is not None
    assert record.error.type == "ValueError"
    assert record.error.message == "card declined"

    second = await replay(wf, None, recorder.records)
    assert second.completed
    assert second.result == "handled"
    assert calls == [1], "the failed step function ran again on replay"
    original, replayed = caught
    assert replayed.step_key == original.step_key == "charge"
    assert replayed.error_type == original.error_type == "ValueError"
    assert replayed.error_message == original.error_message == "card declined"
    assert replayed.attempts == original.attempts == 1
    assert replayed.traceback == original.traceback
    assert "card declined" in (replayed.traceback or "")


async def test_replay__handcrafted_error_record_raises_step_execution_error() -> None:
    calls: list[int] = []

    @workflow
    async def wf(ctx: WorkflowContext) -> None:
        await ctx.step.run("charge", lambda: calls.append(1))

    history = [
        StepRecord(
            key="charge",
            seq=1,
            kind=StepKind.RUN,
            error=ErrorInfo(type="billing.CardDeclined", message="no funds"),
            attempts=3,
        )
    ]
    outcome = await replay(wf, None, history)
    assert not outcome.completed
    assert outcome.error is not None
    assert outcome.error.type == "polos.errors.StepExecutionError"
    assert "billing.CardDeclined: no funds" in outcome.error.message
    assert "3 attempt(s)" in outcome.error.message
    assert calls == []


# ---------------------------------------------------------------------- non-determinism


async def test_replay__kind_mismatch_fails_with_non_determinism_error() -> None:
    calls: list[int] = []

    @workflow(retry=RetryPolicy(max_attempts=5))
    async def wf(ctx: WorkflowContext) -> None:
        await ctx.step.run("a", lambda: calls.append(1))

    history = [StepRecord(key="a", seq=1, kind=StepKind.UUID, output="0f0f")]
    outcome = await replay(wf, None, history)
    assert not outcome.completed
    assert outcome.error is not None
    assert outcome.error.type == "polos.errors.NonDeterminismError"
    assert outcome.retryable is False
    message = outcome.error.message
    assert "step 'a'" in message
    assert "'uuid'" in message
    assert "ctx.step.run()" in message
    assert "same step calls in the same order" in message
    assert "new key" in message
    assert calls == []


async def test_replay__run_recorded_but_uuid_called_is_non_determinism() -> None:
    @workflow
    async def wf(ctx: WorkflowContext) -> str:
        return ctx.step.uuid("a")

    history = [StepRecord(key="a", seq=1, kind=StepKind.RUN, output=1)]
    outcome = await replay(wf, None, history)
    assert outcome.error is not None
    assert outcome.error.type == "polos.errors.NonDeterminismError"
    assert "'run'" in outcome.error.message
    assert "ctx.step.uuid()" in outcome.error.message


async def test_replay__kind_mismatch_mentions_changed_fingerprint() -> None:
    @workflow
    async def wf(ctx: WorkflowContext) -> None:
        await ctx.step.run("a", lambda: None)

    history = [StepRecord(key="a", seq=1, kind=StepKind.NOW, output=0)]
    outcome = await run_attempt(
        wf,
        AttemptInput(
            execution_id="e-1",
            attempt=2,
            payload=None,
            history=history,
            code_fingerprint="0123456789abcdef",
        ),
        MemoryRecorder(),
    )
    assert outcome.error is not None
    assert outcome.error.type == "polos.errors.NonDeterminismError"
    assert f"fingerprint 0123456789abcdef → {wf.fingerprint}" in outcome.error.message
    assert "execution e-1" in outcome.error.message


# ---------------------------------------------------------------------- uuid / now / random


async def test_recorded_values__same_values_on_replay() -> None:
    seen: list[tuple[str, datetime, float]] = []

    @workflow
    async def wf(ctx: WorkflowContext) -> None:
        seen.append((ctx.step.uuid("id"), ctx.step.now("t"), ctx.step.random("r")))

    first, recorder = await run_once(wf)
    assert first.completed
    kinds = {r.key: r.kind for r in recorder.records}
    assert kinds == {"id": StepKind.UUID, "t": StepKind.NOW, "r": StepKind.RANDOM}

    second = await replay(wf, None, recorder.records)
    assert second.completed
    assert seen[1] == seen[0]
    uuid_value, now_value, random_value = seen[0]
    assert len(uuid_value) == 36
    assert now_value.tzinfo == UTC
    assert 0 <= random_value < 1


async def test_recorded_values__replay_returns_recorded_values() -> None:
    seen: list[tuple[str, datetime, float]] = []

    @workflow
    async def wf(ctx: WorkflowContext) -> None:
        seen.append((ctx.step.uuid("id"), ctx.step.now("t"), ctx.step.random("r")))

    history = [
        StepRecord(key="id", seq=1, kind=StepKind.UUID, output="fixed-uuid"),
        StepRecord(key="t", seq=2, kind=StepKind.NOW, output=1_700_000_000_123),
        StepRecord(key="r", seq=3, kind=StepKind.RANDOM, output=0.25),
    ]
    outcome, recorder = await run_once(wf, history=history, attempt=2)
    assert outcome.completed
    assert seen == [("fixed-uuid", datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=UTC), 0.25)]
    assert recorder.records == []


async def test_recorded_values__flushed_before_next_step_function_runs() -> None:
    recorder = MemoryRecorder()
    durable_at: dict[str, list[tuple[str, int]]] = {}

    def snapshot() -> list[tuple[str, int]]:
        return [(r.key, r.seq) for r in recorder.records]

    def use_id() -> str:
        durable_at["inside step"] = snapshot()
        return "done"

    @workflow
    async def wf(ctx: WorkflowContext) -> None:
        ctx.step.uuid("id")
        ctx.step.random("r")
        durable_at["after values"] = snapshot()
        assert ctx.step.pending
        await ctx.step.run("use", use_id)
        assert not ctx.step.pending
        ctx.step.now("t")
        durable_at["before end"] = snapshot()

    outcome, _ = await run_once(wf, recorder=recorder)
    assert outcome.completed
    assert durable_at["after values"] == []
    assert durable_at["inside step"] == [("id", 1), ("r", 2)]
    assert durable_at["before end"] == [("id", 1), ("r", 2), ("use", 3)]
    # ... and the last value is made durable when the attempt completes.
    assert snapshot() == [("id", 1), ("r", 2), ("use", 3), ("t", 4)]


async def test_recorded_values__flushed_when_workflow_fails() -> None:
    @workflow
    async def wf(ctx: WorkflowContext) -> None:
        ctx.step.uuid("id")
        raise RuntimeError("boom")

    outcome, recorder = await run_once(wf)
    assert not outcome.completed
    assert [r.key for r in recorder.records] == ["id"]


async def test_recorded_values__replayed_steps_do_not_flush_pending_values() -> None:
    recorder = MemoryRecorder()
    durable: list[list[str]] = []

    @workflow
    async def wf(ctx: WorkflowContext) -> None:
        ctx.step.uuid("id")
        await ctx.step.run("replayed", lambda: None)
        durable.append([r.key for r in recorder.records])

    history = [StepRecord(key="replayed", seq=5, kind=StepKind.RUN, output=None)]
    outcome, _ = await run_once(wf, history=history, recorder=recorder, attempt=2)
    assert outcome.completed
    assert durable == [[]]
    assert [(r.key, r.seq) for r in recorder.records] == [("id", 6)]


# ---------------------------------------------------------------------- lease lost


async def test_lease_lost__cannot_be_swallowed_by_except_exception() -> None:
    reached: list[str] = []

    @workflow
    async def wf(ctx: WorkflowContext) -> str:
        for key in ("one", "two", "three"):
            try:
                await ctx.step.run(key, lambda k=key: reached.append(k))
            except Exception:
                reached.append(f"swallowed {key}")
        reached.append("end")
        return "done"

    assert issubclass(LeaseLost, BaseException)
    assert not issubclass(LeaseLost, Exception)
    recorder = MemoryRecorder(fence_after=1)
    given = AttemptInput(execution_id="e-lease", attempt=1, payload=None, history=[])
    with pytest.raises(LeaseLost, match="fenced"):
        await run_attempt(wf, given, recorder)
    assert reached == ["one", "two"]
    assert [r.key for r in recorder.records] == ["one"]


async def test_lease_lost__raised_when_final_flush_is_fenced() -> None:
    @workflow
    async def wf(ctx: WorkflowContext) -> str:
        return ctx.step.uuid("id")

    with pytest.raises(LeaseLost):
        await run_once(wf, recorder=MemoryRecorder(fence_after=0))


async def test_lease_lost__raised_when_failed_step_is_fenced() -> None:
    @workflow
    async def wf(ctx: WorkflowContext) -> None:
        try:
            await ctx.step.run("bad", _raise_value_error, retry_policy=NO_RETRY)
        except Exception:
            pass

    with pytest.raises(LeaseLost):
        await run_once(wf, recorder=MemoryRecorder(fence_after=0))


def _raise_value_error() -> None:
    raise ValueError("bad")


async def test_replay__unannotated_datetime_output_same_type_on_replay() -> None:
    seen: list[Any] = []

    @workflow
    async def wf(ctx: WorkflowContext) -> None:
        seen.append(await ctx.step.run("t", lambda: datetime(2024, 5, 1, tzinfo=UTC)))

    _, recorder = await run_once(wf)
    await replay(wf, None, recorder.records)
    assert seen[1] == seen[0]
