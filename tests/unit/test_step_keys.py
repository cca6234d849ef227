"""Step keys (occurrence suffixes, validation) and ``polos.current_step()``."""

from __future__ import annotations

import pytest

from polos import (
    ConfigurationError,
    RetryPolicy,
    StepInfo,
    WorkflowContext,
    current_step,
    workflow,
)
from polos.protocol import StepKind, StepRecord
from polos.sdk import Step
from polos.testing import MemoryRecorder, replay, run_once


def _step(history: list[StepRecord] | None = None, **kwargs: object) -> tuple[Step, MemoryRecorder]:
    recorder = MemoryRecorder()
    step = Step(execution_id="exec-1", history=history or [], recorder=recorder, **kwargs)  # type: ignore[arg-type]
    return step, recorder


# ---------------------------------------------------------------------- occurrence suffixes


async def test_step_keys__repeated_key_in_loop_gets_suffixes() -> None:
    @workflow
    async def wf(ctx: WorkflowContext) -> list[int]:
        return [await ctx.step.run("x", lambda i=i: i * 10) for i in range(3)]

    outcome, recorder = await run_once(wf)
    assert outcome.result == [0, 10, 20]
    assert [(r.key, r.seq, r.output) for r in recorder.records] == [
        ("x", 1, 0),
        ("x#2", 2, 10),
        ("x#3", 3, 20),
    ]


async def test_step_keys__each_name_counts_its_own_occurrences() -> None:
    step, recorder = _step()
    await step.run("a", lambda: 1)
    await step.run("b", lambda: 2)
    await step.run("a", lambda: 3)
    step.uuid("b")
    assert [r.key for r in recorder.records] == ["a", "b", "a#2"]
    await step.flush()
    assert [r.key for r in recorder.records] == ["a", "b", "a#2", "b#2"]


async def test_step_keys__replay_matches_each_occurrence_to_its_record() -> None:
    calls: list[int] = []

    @workflow
    async def wf(ctx: WorkflowContext) -> list[str]:
        return [await ctx.step.run("x", lambda: calls.append(1)) for _ in range(3)]

    history = [
        StepRecord(key="x", seq=1, kind=StepKind.RUN, output="first"),
        StepRecord(key="x#2", seq=2, kind=StepKind.RUN, output="second"),
        StepRecord(key="x#3", seq=3, kind=StepKind.RUN, output="third"),
    ]
    outcome = await replay(wf, None, history)
    assert outcome.result == ["first", "second", "third"]
    assert calls == []


async def test_step_keys__fourth_occurrence_runs_after_three_replayed() -> None:
    @workflow
    async def wf(ctx: WorkflowContext) -> list[str]:
        return [await ctx.step.run("x", lambda: "new") for _ in range(4)]

    history = [
        StepRecord(key=key, seq=n, kind=StepKind.RUN, output="old")
        for n, key in enumerate(["x", "x#2", "x#3"], start=1)
    ]
    outcome, recorder = await run_once(wf, history=history, attempt=2)
    assert outcome.result == ["old", "old", "old", "new"]
    assert [(r.key, r.seq) for r in recorder.records] == [("x#4", 4)]


# ---------------------------------------------------------------------- invalid keys


@pytest.mark.parametrize("key", ["", "charge#2", "#", "a" * 201])
async def test_step_keys__invalid_key_rejected(key: str) -> None:
    calls: list[int] = []
    step, recorder = _step()
    with pytest.raises(ConfigurationError):
        await step.run(key, lambda: calls.append(1))
    with pytest.raises(ConfigurationError):
        step.uuid(key)
    assert calls == []
    assert recorder.records == []
    assert not step.pending


async def test_step_keys__longest_allowed_key_accepted() -> None:
    step, recorder = _step()
    await step.run("k" * 200, lambda: None)
    assert recorder.records[0].key == "k" * 200


async def test_step_keys__hash_in_key_fails_the_workflow() -> None:
    @workflow
    async def wf(ctx: WorkflowContext) -> None:
        await ctx.step.run("charge#2", lambda: None)

    outcome, recorder = await run_once(wf)
    assert not outcome.completed
    assert outcome.error is not None
    assert outcome.error.type == "polos.errors.ConfigurationError"
    assert "'#'" in outcome.error.message
    assert recorder.records == []


async def test_step_keys__retry_policy_must_be_a_retry_policy() -> None:
    step, _ = _step()
    with pytest.raises(ConfigurationError, match="RetryPolicy"):
        await step.run("x", lambda: None, retry_policy={"max_attempts": 1})


# ---------------------------------------------------------------------- current_step()


async def test_current_step__gives_idempotency_key_and_attempt() -> None:
    seen: list[StepInfo] = []

    def charge() -> str:
        info = current_step()
        seen.append(info)
        return info.idempotency_key

    @workflow
    async def wf(ctx: WorkflowContext) -> list[str]:
        return [await ctx.step.run("charge", charge) for _ in range(2)]

    outcome, _ = await run_once(wf, execution_id="exec-42")
    assert outcome.result == ["exec-42:charge", "exec-42:charge#2"]
    assert [(s.execution_id, s.step_key, s.attempt) for s in seen] == [
        ("exec-42", "charge", 1),
        ("exec-42", "charge#2", 1),
    ]


async def test_current_step__works_in_async_step_function() -> None:
    async def charge() -> str:
        return current_step().idempotency_key

    step, _ = _step()
    assert await step.run("pay", charge) == "exec-1:pay"


async def test_current_step__attempt_increments_and_key_is_stable_across_retries(
    fake_sleep: object,
) -> None:
    seen: list[tuple[int, str]] = []

    def flaky() -> str:
        info = current_step()
        seen.append((info.attempt, info.idempotency_key))
        if info.attempt < 3:
            raise ConnectionError("try again")
        return "ok"

    step, _ = _step(sleep=fake_sleep)
    result = await step.run("call", flaky, retry_policy=RetryPolicy(max_attempts=3, jitter=0))
    assert result == "ok"
    assert seen == [(1, "exec-1:call"), (2, "exec-1:call"), (3, "exec-1:call")]


async def test_current_step__outside_a_step_raises_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="inside a step function"):
        current_step()

    errors: list[str] = []

    @workflow
    async def wf(ctx: WorkflowContext) -> None:
        await ctx.step.run("a", lambda: None)
        try:
            current_step()  # in the workflow body, between steps
        except ConfigurationError as exc:
            errors.append(str(exc))

    outcome, _ = await run_once(wf)
    assert outcome.completed
    assert len(errors) == 1


def test_step_info__idempotency_key_format() -> None:
    assert StepInfo("e", "k#3", 2).idempotency_key == "e:k#3"
