"""Step timeouts, run-timeout settings and cancellation inside a workflow (in memory, no I/O)."""

from __future__ import annotations

import asyncio
import pickle
import threading
import time
from datetime import timedelta
from typing import Any

import pydantic
import pytest

from polos import (
    BatchWorkflowInput,
    ConfigurationError,
    ExecutionCancelled,
    PolosClient,
    RetryPolicy,
    StepExecutionError,
    StepTimeoutError,
    WorkflowContext,
    WorkflowFailedError,
    WorkflowTimeoutError,
    workflow,
)
from polos.protocol import (
    ErrorInfo,
    Execution,
    ExecutionStatus,
    InvokeRequest,
    StepKind,
    StepRecord,
    run_timeout_ms,
)
from polos.sdk import AttemptInput, CancelSignal, run_attempt
from polos.testing import MemoryRecorder, run_once

NO_RETRY = RetryPolicy(max_attempts=1)
FAST_RETRY = RetryPolicy(max_attempts=3, initial_interval=0.01, jitter=0)


async def _hang() -> str:
    await asyncio.sleep(30)
    return "never"


# ---------------------------------------------------------------------- step timeouts


async def test_step_timeout__async_step_is_cancelled_and_raises_step_timeout_error() -> None:
    cancelled: list[bool] = []

    async def hang() -> str:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise
        return "never"

    @workflow
    async def wf(ctx: WorkflowContext) -> dict[str, Any]:
        try:
            await ctx.step.run("slow", hang, timeout=0.05, retry_policy=NO_RETRY)
        except StepTimeoutError as exc:
            return {"key": exc.step_key, "type": exc.error_type, "attempts": exc.attempts}
        return {}

    started = time.monotonic()
    outcome, recorder = await run_once(wf)

    assert time.monotonic() - started < 2
    assert outcome.completed, outcome.error
    assert outcome.result == {"key": "slow", "type": "polos.StepTimeoutError", "attempts": 1}
    assert cancelled == [True]
    [record] = recorder.records
    assert record.error is not None and record.error.type == "polos.StepTimeoutError"
    assert "timed out after 0.05 s" in record.error.message


async def test_step_timeout__applies_per_attempt_and_the_retry_policy_retries_it() -> None:
    calls: list[int] = []

    async def slow_then_fast() -> int:
        calls.append(1)
        if len(calls) < 3:
            await asyncio.sleep(30)
        return len(calls)

    @workflow
    async def wf(ctx: WorkflowContext) -> int:
        return await ctx.step.run(
            "flaky", slow_then_fast, timeout=timedelta(milliseconds=50), retry_policy=FAST_RETRY
        )

    outcome, recorder = await run_once(wf)

    assert outcome.completed, outcome.error
    assert outcome.result == 3
    assert [(r.key, r.output, r.attempts) for r in recorder.records] == [("flaky", 3, 3)]


async def test_step_timeout__every_attempt_timing_out_fails_the_step_after_the_policy() -> None:
    @workflow
    async def wf(ctx: WorkflowContext) -> None:
        await ctx.step.run("slow", _hang, timeout=0.02, retry_policy=FAST_RETRY)

    outcome, recorder = await run_once(wf)

    assert outcome.error is not None
    assert outcome.error.type == "polos.errors.StepTimeoutError"
    assert recorder.records[0].attempts == 3


async def test_step_timeout__non_retryable_stops_at_the_first_timeout() -> None:
    policy = RetryPolicy(
        max_attempts=5, initial_interval=0.01, non_retryable_errors=["StepTimeoutError"]
    )

    @workflow
    async def wf(ctx: WorkflowContext) -> None:
        await ctx.step.run("slow", _hang, timeout=0.02, retry_policy=policy)

    _, recorder = await run_once(wf)

    assert recorder.records[0].attempts == 1


async def test_step_timeout__sync_step_gives_up_while_its_thread_finishes_in_the_background() -> (
    None
):
    finished = threading.Event()

    def blocking() -> str:
        time.sleep(0.4)
        finished.set()
        return "late"

    @workflow
    async def wf(ctx: WorkflowContext) -> str:
        try:
            await ctx.step.run("blocking", blocking, timeout=0.05, retry_policy=NO_RETRY)
        except StepTimeoutError:
            return "timed out"
        return "finished"

    started = time.monotonic()
    outcome, _ = await run_once(wf)

    assert outcome.result == "timed out"
    assert time.monotonic() - started < 0.3
    assert not finished.is_set()
    assert await asyncio.to_thread(finished.wait, 5)  # the thread could not be stopped


async def test_step_timeout__the_functions_own_timeout_error_is_not_a_step_timeout() -> None:
    async def raises() -> None:
        raise TimeoutError("the API said so")

    @workflow
    async def wf(ctx: WorkflowContext) -> str:
        try:
            await ctx.step.run("call", raises, timeout=5, retry_policy=NO_RETRY)
        except StepTimeoutError:
            return "step timeout"
        except StepExecutionError as exc:
            return exc.error_type
        return "ok"

    outcome, _ = await run_once(wf)

    assert outcome.result == "TimeoutError"


async def test_step_timeout__a_fast_step_is_unaffected() -> None:
    @workflow
    async def wf(ctx: WorkflowContext) -> int:
        return await ctx.step.run("quick", lambda: 7, timeout=5)

    outcome, _ = await run_once(wf)

    assert outcome.result == 7


async def test_step_timeout__replay_of_a_recorded_timeout_raises_step_timeout_error() -> None:
    error = ErrorInfo(type="polos.StepTimeoutError", message="step 'slow' timed out after 1 s")
    history = [StepRecord(key="slow", seq=1, kind=StepKind.RUN, error=error, attempts=2)]
    ran: list[int] = []

    @workflow
    async def wf(ctx: WorkflowContext) -> list[Any]:
        try:
            await ctx.step.run("slow", lambda: ran.append(1), timeout=1)
        except StepTimeoutError as exc:
            return [type(exc).__name__, exc.attempts, isinstance(exc, StepExecutionError)]
        return []

    outcome, _ = await run_once(wf, history=history, attempt=2)

    assert outcome.result == ["StepTimeoutError", 2, True]
    assert ran == []


@pytest.mark.parametrize("bad", [0, -1, float("nan"), "5", timedelta(seconds=-1)])
async def test_step_timeout__invalid_values_are_configuration_errors(bad: object) -> None:
    @workflow
    async def wf(ctx: WorkflowContext) -> None:
        await ctx.step.run("x", lambda: 1, timeout=bad)

    outcome, recorder = await run_once(wf)

    assert outcome.error is not None and outcome.error.type == "polos.errors.ConfigurationError"
    assert "timeout" in outcome.error.message
    assert recorder.records == []


# ---------------------------------------------------------------------- cancellation


async def _start(wf: Any, signal: CancelSignal) -> tuple[asyncio.Task[Any], MemoryRecorder]:
    recorder = MemoryRecorder()
    task = asyncio.create_task(
        run_attempt(
            wf,
            AttemptInput(execution_id="e1", attempt=1, payload=None, history=[]),
            recorder,
            cancel=signal,
        )
    )
    return task, recorder


async def _cancel(task: asyncio.Task[Any], signal: CancelSignal, reason: str) -> None:
    signal.cancel(reason)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)


async def test_cancel__except_exception_cannot_swallow_it_and_finally_runs() -> None:
    seen: list[str] = []
    started = asyncio.Event()

    async def long_step() -> None:
        started.set()
        await asyncio.sleep(30)

    @workflow
    async def wf(ctx: WorkflowContext) -> str:
        try:
            try:
                await ctx.step.run("long", long_step, retry_policy=NO_RETRY)
            except Exception as exc:  # what careless user code does
                seen.append(f"swallowed {type(exc).__name__}")
            await ctx.step.run("after", lambda: seen.append("after ran"))
            return "finished"
        except BaseException as exc:
            seen.append(f"{type(exc).__name__}: {exc}")
            raise
        finally:
            seen.append("finally")

    signal = CancelSignal()
    task, recorder = await _start(wf, signal)
    await asyncio.wait_for(started.wait(), 5)

    await _cancel(task, signal, "cancelled by alice: no longer needed")

    assert seen == ["ExecutionCancelled: cancelled by alice: no longer needed", "finally"]
    assert recorder.records == []


async def test_cancel__code_that_catches_it_anyway_cannot_run_another_step() -> None:
    seen: list[str] = []
    started = asyncio.Event()

    async def long_step() -> None:
        started.set()
        await asyncio.sleep(30)

    @workflow
    async def wf(ctx: WorkflowContext) -> str:
        try:
            await ctx.step.run("long", long_step, retry_policy=NO_RETRY)
        except BaseException as exc:  # deliberately hostile
            seen.append(type(exc).__name__)
        try:
            await ctx.step.run("next", lambda: seen.append("next ran"))
        except ExecutionCancelled as exc:
            seen.append(f"again: {exc.reason}")
            raise
        return "finished"

    signal = CancelSignal()
    task, _ = await _start(wf, signal)
    await asyncio.wait_for(started.wait(), 5)

    await _cancel(task, signal, "run timeout of 2 s exceeded")

    assert seen == ["ExecutionCancelled", "again: run timeout of 2 s exceeded"]


async def test_cancel__a_sync_workflow_stops_at_its_step_call() -> None:
    seen: list[str] = []
    started = threading.Event()

    async def long_step() -> None:
        started.set()
        await asyncio.sleep(30)

    @workflow
    def wf(ctx: WorkflowContext) -> str:
        try:
            ctx.step.run_sync("long", long_step, retry_policy=NO_RETRY)
        except Exception as exc:
            seen.append(f"swallowed {type(exc).__name__}")
        except BaseException as exc:
            seen.append(type(exc).__name__)
            raise
        return "finished"

    signal = CancelSignal()
    task, _ = await _start(wf, signal)
    assert await asyncio.to_thread(started.wait, 5)

    await _cancel(task, signal, "cancelled by api")

    # The thread is not interrupted by the task's cancellation; the signal stops its step call.
    deadline = time.monotonic() + 5
    while not seen and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert seen == ["ExecutionCancelled"]


async def test_cancel__without_the_signal_the_asyncio_cancellation_passes_through() -> None:
    started = asyncio.Event()

    async def long_step() -> None:
        started.set()
        await asyncio.sleep(30)

    seen: list[type[BaseException]] = []

    @workflow
    async def wf(ctx: WorkflowContext) -> None:
        try:
            await ctx.step.run("long", long_step, retry_policy=NO_RETRY)
        except BaseException as exc:
            seen.append(type(exc))
            raise

    task, _ = await _start(wf, CancelSignal())
    await asyncio.wait_for(started.wait(), 5)
    task.cancel()  # e.g. a worker shutting down: not a cancellation of the execution
    with pytest.raises(asyncio.CancelledError):
        await task
    assert seen == [asyncio.CancelledError]


def test_execution_cancelled__is_a_cancellation_not_an_exception() -> None:
    exc = ExecutionCancelled("cancelled by bob")
    assert isinstance(exc, asyncio.CancelledError) and not isinstance(exc, Exception)
    again = pickle.loads(pickle.dumps(exc))
    assert (type(again), again.reason) == (ExecutionCancelled, "cancelled by bob")


# ---------------------------------------------------------------------- run timeout settings


def test_workflow__timeout_and_timeout_counts_waits_are_registered() -> None:
    @workflow(timeout=timedelta(minutes=2), timeout_counts_waits=True)
    async def wf(ctx: WorkflowContext) -> None:
        return None

    @workflow(timeout=1.5)
    async def plain(ctx: WorkflowContext) -> None:
        return None

    assert wf.spec().options == {"timeout_seconds": 120.0, "timeout_counts_waits": True}
    assert plain.spec().options == {"timeout_seconds": 1.5}


@pytest.mark.parametrize("bad", [0, -5, timedelta(0), float("inf"), "10"])
def test_workflow__invalid_timeout_is_a_configuration_error(bad: Any) -> None:
    with pytest.raises(ConfigurationError, match="timeout"):
        workflow(timeout=bad)


@pytest.mark.parametrize(
    ("value", "expected"), [(None, None), (2, 2000), (0.0001, 1), (timedelta(hours=1), 3_600_000)]
)
def test_run_timeout_ms__converts_durations(value: Any, expected: int | None) -> None:
    assert run_timeout_ms(value) == expected


@pytest.mark.parametrize("bad", [-1, 0, float("nan"), 400 * 24 * 3600, True])
async def test_client_invoke__invalid_run_timeout_fails_before_any_request(bad: Any) -> None:
    async with PolosClient("http://127.0.0.1:9", retry_for=0) as client:
        with pytest.raises(ConfigurationError, match="run_timeout"):
            await client.invoke("wf", run_timeout=bad)
        with pytest.raises(ConfigurationError, match="run_timeout"):
            await client.invoke_many("wf", [1], run_timeout=bad)


@pytest.mark.parametrize("bad", [-1, 0, 1e12])
def test_invoke_request__refuses_a_non_positive_or_huge_run_timeout(bad: float) -> None:
    with pytest.raises(pydantic.ValidationError):
        InvokeRequest(run_timeout_seconds=bad)


async def test_children__carry_their_run_timeout() -> None:
    @workflow
    async def parent(ctx: WorkflowContext) -> None:
        await ctx.step.invoke("one", "child", {}, run_timeout=2.5)
        await ctx.step.batch_invoke(
            "many",
            [
                BatchWorkflowInput("child", run_timeout=timedelta(seconds=1)),
                BatchWorkflowInput("child"),
            ],
        )

    outcome, recorder = await run_once(parent)

    assert outcome.completed, outcome.error
    assert [c.run_timeout_ms for c in recorder.children] == [2500, 1000, None]


def _finished(status: ExecutionStatus, error_type: str) -> Execution:
    return Execution(
        id="e1",
        project_id="default",
        workflow_id="wf",
        status=status,
        error=ErrorInfo(type=error_type, message="run timeout of 2 s exceeded"),
        attempt=1,
        created_at=1,
        updated_at=2,
        available_at=1,
    )


def test_result_of__a_timed_out_execution_raises_workflow_timeout_error() -> None:
    with pytest.raises(WorkflowTimeoutError) as caught:
        PolosClient.result_of(_finished(ExecutionStatus.FAILED, "polos.WorkflowTimeoutError"))
    assert isinstance(caught.value, WorkflowFailedError)
    assert caught.value.error_type == "polos.WorkflowTimeoutError"
    with pytest.raises(WorkflowFailedError) as other:
        PolosClient.result_of(_finished(ExecutionStatus.FAILED, "ValueError"))
    assert not isinstance(other.value, WorkflowTimeoutError)


def test_cancel_notification__round_trips_reasons_with_commas_and_reads_the_old_form() -> None:
    from polos.storage import cancel_targets
    from polos.storage._listen import cancel_items

    targets = [
        ("w-1", "e-1", "cancelled by alice: a, b"),
        ("w-2", "e-2", "run timeout of 2 s exceeded"),
    ]
    payload = ",".join(cancel_items(targets))

    assert cancel_targets(payload) == targets
    assert cancel_targets("w-9 e-9") == [("w-9", "e-9", "cancelled")]
    assert cancel_targets("[not json") == []
