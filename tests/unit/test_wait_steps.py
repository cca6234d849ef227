"""The waiting steps in memory: what they ask the orchestrator, and how they replay."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pydantic
import pytest

from polos import (
    BatchEventPayload,
    BatchWorkflowInput,
    ChildWorkflowError,
    EventPayload,
    ResumeData,
    RetryPolicy,
    WaitTimeoutError,
    WorkflowContext,
    workflow,
)
from polos.protocol import ErrorInfo, StepKind, StepRecord, WaitKind, now_ms
from polos.sdk import child_execution_id
from polos.testing import run_once

NO_RETRY = RetryPolicy(max_attempts=1)


def _record(key: str, kind: StepKind, output: Any = None, **fields: Any) -> StepRecord:
    return StepRecord(key=key, seq=fields.pop("seq", 1), kind=kind, output=output, **fields)


class Order(pydantic.BaseModel):
    id: str
    amount: float


# ---------------------------------------------------------------------- suspend


@workflow(retry=NO_RETRY)
async def approval(ctx: WorkflowContext, amount: int) -> dict[str, Any]:
    try:
        decision = await ctx.step.suspend("approval", data={"amount": amount}, timeout=60)
    except WaitTimeoutError as exc:
        return {"timed_out": exc.step_key}
    return {"approved": decision.data["ok"], "at": decision.resumed_at}


async def test_suspend__first_run_parks_with_data_and_deadline() -> None:
    before = now_ms()
    outcome, recorder = await run_once(approval, 5)
    assert outcome.parked and not outcome.completed
    parked = recorder.parked
    assert parked is not None
    assert (parked.key, parked.kind, parked.spec.kind) == (
        "approval",
        StepKind.SUSPEND,
        WaitKind.SUSPEND,
    )
    assert parked.spec.data == {"amount": 5}
    assert parked.spec.expires_at is not None
    assert before + 60_000 <= parked.spec.expires_at <= now_ms() + 60_000


async def test_suspend__replay_returns_resume_data() -> None:
    history = [_record("approval", StepKind.SUSPEND, {"data": {"ok": True}, "resumed_at": 7})]
    outcome, recorder = await run_once(approval, 5, history=history, attempt=2)
    assert outcome.completed, outcome.error
    assert outcome.result == {"approved": True, "at": 7}
    assert recorder.parked is None


async def test_suspend__recorded_timeout_raises_catchable_wait_timeout_error() -> None:
    error = ErrorInfo(type="polos.WaitTimeoutError", message="timed out after 60 s")
    history = [_record("approval", StepKind.SUSPEND, error=error, completed_at=123)]
    outcome, _ = await run_once(approval, 5, history=history, attempt=2)
    assert outcome.completed, outcome.error
    assert outcome.result == {"timed_out": "approval"}


async def test_suspend__recorded_as_another_kind_is_non_determinism() -> None:
    history = [_record("approval", StepKind.RUN, 1)]
    outcome, _ = await run_once(approval, 5, history=history, attempt=2)
    assert not outcome.completed and not outcome.parked
    assert outcome.error is not None and outcome.error.type.endswith("NonDeterminismError")
    assert "suspend" in outcome.error.message


async def test_resume_data__is_a_model_with_data() -> None:
    assert ResumeData.model_validate({"data": [1]}).data == [1]


# ---------------------------------------------------------------------- timers


@workflow
async def napper(ctx: WorkflowContext, seconds: float) -> str:
    await ctx.step.sleep("nap", seconds)
    return "awake"


async def test_sleep__short_sleeps_in_process_after_recording_wake_up_time() -> None:
    outcome, recorder = await run_once(napper, 0.05)
    assert outcome.completed and outcome.result == "awake"
    assert recorder.parked is None
    [record] = recorder.records
    assert record.kind == StepKind.SLEEP
    assert record.output["until"] >= record.started_at + 50


async def test_sleep__long_parks_with_its_due_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POLOS_WAIT_THRESHOLD_SECONDS", "1")
    before = now_ms()
    outcome, recorder = await run_once(napper, 3600)
    assert outcome.parked
    assert recorder.parked is not None and recorder.parked.spec.kind == WaitKind.SLEEP
    assert recorder.parked.spec.expires_at is not None
    assert recorder.parked.spec.expires_at >= before + 3_600_000
    assert recorder.records == []


async def test_sleep__replay_after_crash_sleeps_only_the_rest() -> None:
    until = now_ms() + 80
    history = [_record("nap", StepKind.SLEEP, {"until": until})]
    started = asyncio.get_running_loop().time()
    outcome, _ = await run_once(napper, 3600, history=history, attempt=2)
    waited = asyncio.get_running_loop().time() - started
    assert outcome.completed
    assert waited < 5, "replay slept the whole hour again"


async def test_sleep__negative_duration_is_a_clear_error() -> None:
    outcome, _ = await run_once(napper, -1)
    assert outcome.error is not None and "must not be negative" in outcome.error.message


async def test_wait_until__a_past_time_returns_at_once() -> None:
    @workflow
    async def until_past(ctx: WorkflowContext) -> str:
        await ctx.step.wait_until("then", datetime(2000, 1, 1, tzinfo=UTC))
        await ctx.step.wait_for("zero", seconds=0)
        return "done"

    outcome, recorder = await run_once(until_past)
    assert outcome.completed and outcome.result == "done"
    assert [r.kind for r in recorder.records] == [StepKind.SLEEP, StepKind.SLEEP]


# ---------------------------------------------------------------------- events


@workflow(retry=NO_RETRY)
async def pickup(ctx: WorkflowContext, topic: str) -> Any:
    event = await ctx.step.wait_for_event("pickup", topic=topic, timeout=timedelta(hours=1))
    return {"seq": event.seq, "data": event.data}


async def test_wait_for_event__parks_on_the_topic() -> None:
    outcome, recorder = await run_once(pickup, "warehouse.pickup/42")
    assert outcome.parked
    assert recorder.parked is not None
    assert recorder.parked.spec.topic == "warehouse.pickup/42"
    assert recorder.parked.kind == StepKind.WAIT_EVENT


async def test_wait_for_event__replay_returns_the_event() -> None:
    event = {"id": "e1", "topic": "t", "seq": 3, "data": {"x": 1}, "created_at": 1}
    history = [_record("pickup", StepKind.WAIT_EVENT, event)]
    outcome, _ = await run_once(pickup, "t", history=history, attempt=2)
    assert outcome.result == {"seq": 3, "data": {"x": 1}}


async def test_wait_for_event__invalid_topic_is_a_configuration_error() -> None:
    outcome, recorder = await run_once(pickup, "has space")
    assert not outcome.parked and recorder.parked is None
    assert outcome.error is not None and "invalid topic" in outcome.error.message


@workflow
async def announcer(ctx: WorkflowContext) -> int:
    event = await ctx.step.publish_event("announce", topic="order/done", data={"id": 1})
    return event.seq


async def test_publish_event__records_once_and_replays_without_publishing() -> None:
    outcome, recorder = await run_once(announcer)
    assert outcome.result == 1
    assert [p.topic for p in recorder.published] == ["order/done"]
    again, second = await run_once(announcer, history=recorder.records, attempt=2)
    assert again.result == 1
    assert second.published == []


# ---------------------------------------------------------------------- children


@workflow
async def double(ctx: WorkflowContext, n: int) -> int:
    return n * 2


@workflow(retry=NO_RETRY)
async def parent(ctx: WorkflowContext, n: int) -> Any:
    try:
        return await ctx.step.invoke_and_wait("child", double, n)
    except ChildWorkflowError as exc:
        return {"child_failed": exc.error_message}


async def test_invoke_and_wait__parks_with_one_child_whose_id_is_derived() -> None:
    outcome, recorder = await run_once(parent, 4, execution_id="p1")
    assert outcome.parked
    [child] = recorder.children
    assert child.execution_id == child_execution_id("p1", "child", 0)
    assert (child.workflow_id, child.payload) == ("double", 4)


async def test_invoke_and_wait__replay_returns_result_or_raises_child_error() -> None:
    done = {"execution_id": "c", "workflow_id": "double", "status": "completed", "result": 8}
    outcome, _ = await run_once(
        parent, 4, history=[_record("child", StepKind.INVOKE_WAIT, done)], attempt=2
    )
    assert outcome.result == 8
    failed = {
        "execution_id": "c",
        "workflow_id": "double",
        "status": "failed",
        "error": {"type": "ValueError", "message": "boom"},
    }
    outcome, _ = await run_once(
        parent, 4, history=[_record("child", StepKind.INVOKE_WAIT, failed)], attempt=2
    )
    assert outcome.result == {"child_failed": "boom"}


@workflow
async def fan(ctx: WorkflowContext, numbers: list[int]) -> list[Any]:
    results = await ctx.step.batch_invoke_and_wait(
        "fan", [BatchWorkflowInput(double, n) for n in numbers]
    )
    return [r.result if r.success else r.error.message if r.error else None for r in results]


async def test_batch_invoke_and_wait__children_in_order_and_results_in_order() -> None:
    outcome, recorder = await run_once(fan, [1, 2, 3], execution_id="p")
    assert outcome.parked
    assert [c.index for c in recorder.children] == [0, 1, 2]
    assert len({c.execution_id for c in recorder.children}) == 3
    results = [
        {
            "execution_id": "a",
            "workflow_id": "double",
            "index": 0,
            "status": "completed",
            "result": 2,
        },
        {
            "execution_id": "b",
            "workflow_id": "double",
            "index": 1,
            "status": "failed",
            "error": {"type": "ValueError", "message": "no"},
        },
        {
            "execution_id": "c",
            "workflow_id": "double",
            "index": 2,
            "status": "completed",
            "result": 6,
        },
    ]
    outcome, _ = await run_once(
        fan, [1, 2, 3], history=[_record("fan", StepKind.INVOKE_WAIT, results)], attempt=2
    )
    assert outcome.result == [2, "no", 6]


async def test_batch_invoke_and_wait__empty_returns_at_once() -> None:
    outcome, recorder = await run_once(fan, [])
    assert outcome.completed and outcome.result == []
    assert recorder.parked is None


async def test_invoke__fire_and_forget_records_handles_and_replays_them() -> None:
    @workflow
    async def starter(ctx: WorkflowContext) -> str:
        handle = await ctx.step.invoke("start", double, 1, priority=5)
        return handle.id

    outcome, recorder = await run_once(starter, execution_id="p9")
    assert outcome.result == child_execution_id("p9", "start", 0)
    assert recorder.children[0].priority == 5
    again, second = await run_once(starter, history=recorder.records, execution_id="p9", attempt=2)
    assert again.result == outcome.result and second.children == []


async def test_invoke__unknown_option_is_a_configuration_error() -> None:
    @workflow
    async def bad(ctx: WorkflowContext) -> None:
        await ctx.step.invoke("start", double, 1, colour="red")

    outcome, _ = await run_once(bad)
    assert outcome.error is not None and "unknown child option" in outcome.error.message


# ---------------------------------------------------------------------- rules


async def test_waiting_while_another_step_runs_is_refused() -> None:
    @workflow(retry=NO_RETRY)
    async def racing(ctx: WorkflowContext) -> None:
        slow = asyncio.ensure_future(ctx.step.run("slow", asyncio.sleep, 0.2))
        await asyncio.sleep(0.01)
        try:
            await ctx.step.suspend("approval")
        finally:
            await slow

    outcome, recorder = await run_once(racing)
    assert recorder.parked is None
    assert outcome.error is not None and "still running ('slow')" in outcome.error.message


async def test_swallowing_the_wait_still_ends_the_attempt_at_the_wait() -> None:
    @workflow
    async def swallower(ctx: WorkflowContext) -> str:
        try:
            await ctx.step.suspend("approval")
        except BaseException:
            pass
        return "went on"

    outcome, _ = await run_once(swallower)
    assert outcome.parked and not outcome.completed


class Counter(pydantic.BaseModel):
    n: int = 0


async def test_park__carries_the_state_snapshot() -> None:
    @workflow(state_schema=Counter)
    async def counting(ctx: WorkflowContext) -> None:
        ctx.state.n = 3
        await ctx.step.suspend("approval")

    outcome, recorder = await run_once(counting)
    assert outcome.parked and recorder.parked is not None
    assert recorder.parked.has_state and recorder.parked.state == {"n": 3}


# ---------------------------------------------------------------------- triggered payloads


async def test_triggered_payload__model_gets_the_data_event_payload_gets_the_event() -> None:
    @workflow
    async def as_model(ctx: WorkflowContext, order: Order) -> str:
        return order.id

    @workflow
    async def as_event(ctx: WorkflowContext, event: EventPayload) -> Any:
        return [event.topic, event.seq, event.data]

    @workflow
    async def as_batch(ctx: WorkflowContext, batch: BatchEventPayload) -> Any:
        return [e.seq for e in batch.events]

    meta = {"id": "e", "topic": "order/new", "seq": 9, "created_at": 1}
    data = {"id": "o1", "amount": 5}
    outcome, _ = await run_once(as_model, data, trigger=meta)
    assert outcome.result == "o1"
    outcome, _ = await run_once(as_event, data, trigger=meta)
    assert outcome.result == ["order/new", 9, data]
    metas = [{**meta, "seq": 9}, {**meta, "seq": 10}]
    outcome, _ = await run_once(as_batch, [data, data], trigger=metas)
    assert outcome.result == [9, 10]


async def test_sync_workflow__waits_through_the_sync_twins() -> None:
    @workflow
    def sync_approval(ctx: WorkflowContext) -> Any:
        decision = ctx.step.suspend_sync("approval", data={"q": 1})
        ctx.step.sleep_sync("nap", 0.01)
        return decision.data

    outcome, recorder = await run_once(sync_approval)
    assert outcome.parked and recorder.parked is not None
    history = [_record("approval", StepKind.SUSPEND, {"data": "yes"})]
    outcome, _ = await run_once(sync_approval, history=history, attempt=2)
    assert outcome.completed and outcome.result == "yes"


async def test_sync_twin_outside_a_sync_workflow_is_a_configuration_error() -> None:
    @workflow
    async def wrong(ctx: WorkflowContext) -> None:
        ctx.step.sleep_sync("nap", 1)

    outcome, _ = await run_once(wrong)
    assert outcome.error is not None and "synchronous workflow" in outcome.error.message
