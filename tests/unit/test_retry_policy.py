"""``RetryPolicy``: delays, retryable errors, and step retries (with an injected fake sleep)."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from polos import ConfigurationError, RetryPolicy, StepExecutionError, WorkflowContext, workflow
from polos.protocol import RetryPolicySpec, StepKind
from polos.sdk import DEFAULT_STEP_RETRY, DEFAULT_WORKFLOW_RETRY, Step
from polos.testing import MemoryRecorder, run_once

from .conftest import FakeSleep


class PaymentError(Exception):
    """A custom error to match by type and by name."""


class CardExpired(PaymentError):
    """A subclass: matched by its parent type, not by its parent's name."""


class FixedRandom(random.Random):
    """A ``random.Random`` whose ``random()`` always returns ``value``."""

    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        return self.value


def _step(sleep: FakeSleep, rng: random.Random | None = None) -> tuple[Step, MemoryRecorder]:
    recorder = MemoryRecorder()
    return Step(
        execution_id="exec-r", history=[], recorder=recorder, sleep=sleep, rng=rng
    ), recorder


# ---------------------------------------------------------------------- delay()


def test_retry_policy__delay_exponential_without_jitter() -> None:
    policy = RetryPolicy(initial_interval=0.5, backoff_coefficient=3, max_interval=100, jitter=0)
    assert [policy.delay(n) for n in (1, 2, 3, 4)] == [0.5, 1.5, 4.5, 13.5]


def test_retry_policy__delay_capped_by_max_interval() -> None:
    policy = RetryPolicy(initial_interval=1, backoff_coefficient=2, max_interval=5, jitter=0)
    assert [policy.delay(n) for n in (1, 2, 3, 4, 5, 30)] == [1.0, 2.0, 4.0, 5.0, 5.0, 5.0]


def test_retry_policy__delay_accepts_timedelta_intervals() -> None:
    policy = RetryPolicy(
        initial_interval=timedelta(milliseconds=250),
        max_interval=timedelta(seconds=1),
        jitter=0,
    )
    assert [policy.delay(n) for n in (1, 2, 3, 4)] == [0.25, 0.5, 1.0, 1.0]


def test_retry_policy__delay_constant_backoff() -> None:
    policy = RetryPolicy(initial_interval=2, backoff_coefficient=1, jitter=0)
    assert {policy.delay(n) for n in range(1, 10)} == {2.0}


@pytest.mark.parametrize(
    ("unit", "expected"),
    [(0.0, 8.0), (0.5, 10.0), (0.75, 11.0), (0.999999, 12.0)],
)
def test_retry_policy__jitter_spreads_by_fraction(unit: float, expected: float) -> None:
    policy = RetryPolicy(initial_interval=10, max_interval=60, jitter=0.2)
    assert policy.delay(1, FixedRandom(unit)) == pytest.approx(expected, abs=0.001)


def test_retry_policy__jitter_applies_after_the_cap() -> None:
    policy = RetryPolicy(initial_interval=10, max_interval=20, jitter=0.5)
    assert policy.delay(10, FixedRandom(0.0)) == 10.0
    assert policy.delay(10, FixedRandom(0.5)) == 20.0


def test_retry_policy__jitter_bounds_with_real_rng() -> None:
    policy = RetryPolicy(initial_interval=1, backoff_coefficient=2, jitter=0.25)
    rng = random.Random(1234)
    for failures, base in [(1, 1.0), (2, 2.0), (3, 4.0)]:
        delays = [policy.delay(failures, rng) for _ in range(200)]
        assert all(base * 0.75 <= d <= base * 1.25 for d in delays), (failures, delays)
        assert len(set(delays)) > 10, "jitter did not spread the delays"


def test_retry_policy__to_spec_in_milliseconds() -> None:
    policy = RetryPolicy(
        max_attempts=4,
        initial_interval=timedelta(milliseconds=1500),
        backoff_coefficient=1.5,
        max_interval=30,
        jitter=0.1,
    )
    assert policy.to_spec() == RetryPolicySpec(
        max_attempts=4,
        initial_interval_ms=1500,
        backoff_coefficient=1.5,
        max_interval_ms=30_000,
        jitter=0.1,
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_attempts": 0},
        {"backoff_coefficient": 0.5},
        {"jitter": -0.1},
        {"jitter": 1.5},
        {"initial_interval": -1},
        {"max_interval": timedelta(seconds=-1)},
    ],
)
def test_retry_policy__invalid_settings_rejected(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_retry_policy__defaults() -> None:
    assert DEFAULT_STEP_RETRY.max_attempts == 3
    assert DEFAULT_WORKFLOW_RETRY.max_attempts == 1
    assert RetryPolicy().max_attempts == 3


# ---------------------------------------------------------------------- is_retryable()


def test_retry_policy__non_retryable_by_type_includes_subclasses() -> None:
    policy = RetryPolicy(non_retryable_errors=[PaymentError])
    assert not policy.is_retryable(PaymentError("x"))
    assert not policy.is_retryable(CardExpired("x"))
    assert policy.is_retryable(ValueError("x"))


def test_retry_policy__non_retryable_by_short_and_qualified_name() -> None:
    short = RetryPolicy(non_retryable_errors=["PaymentError", "KeyError"])
    assert not short.is_retryable(PaymentError("x"))
    assert not short.is_retryable(KeyError("x"))
    assert short.is_retryable(ValueError("x"))
    # A name matches that exact class only, not its subclasses.
    assert short.is_retryable(CardExpired("x"))

    qualified = RetryPolicy(non_retryable_errors=[f"{__name__}.PaymentError"])
    assert not qualified.is_retryable(PaymentError("x"))
    assert qualified.is_retryable(ValueError("x"))


def test_retry_policy__everything_retryable_by_default() -> None:
    assert RetryPolicy().is_retryable(PaymentError("x"))
    assert RetryPolicy().is_retryable(RuntimeError("x"))


# ---------------------------------------------------------------------- step retries


async def test_step_retry__fails_twice_then_succeeds(fake_sleep: FakeSleep) -> None:
    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("network down")
        return "paid"

    step, recorder = _step(fake_sleep)
    policy = RetryPolicy(max_attempts=5, initial_interval=0.5, backoff_coefficient=3, jitter=0)
    assert await step.run("pay", flaky, retry_policy=policy) == "paid"
    assert len(calls) == 3
    assert fake_sleep.delays == [0.5, 1.5]
    (record,) = recorder.records
    assert (record.key, record.kind, record.output, record.error) == (
        "pay",
        StepKind.RUN,
        "paid",
        None,
    )
    assert record.attempts == 3


async def test_step_retry__always_failing_raises_after_max_attempts(
    fake_sleep: FakeSleep,
) -> None:
    calls: list[int] = []

    def broken() -> None:
        calls.append(1)
        raise ConnectionError(f"failure {len(calls)}")

    step, recorder = _step(fake_sleep)
    policy = RetryPolicy(max_attempts=4, initial_interval=1, backoff_coefficient=2, jitter=0)
    with pytest.raises(StepExecutionError) as info:
        await step.run("pay", broken, retry_policy=policy)
    assert len(calls) == 4
    assert fake_sleep.delays == [1.0, 2.0, 4.0]
    error = info.value
    assert (error.step_key, error.error_type, error.error_message, error.attempts) == (
        "pay",
        "ConnectionError",
        "failure 4",
        4,
    )
    assert isinstance(error.__cause__, ConnectionError)
    (record,) = recorder.records
    assert record.attempts == 4
    assert record.error is not None
    assert (record.error.type, record.error.message) == ("ConnectionError", "failure 4")
    assert record.output is None


async def test_step_retry__non_retryable_error_fails_at_once(fake_sleep: FakeSleep) -> None:
    calls: list[int] = []

    def declined() -> None:
        calls.append(1)
        raise CardExpired("expired")

    step, recorder = _step(fake_sleep)
    policy = RetryPolicy(max_attempts=5, non_retryable_errors=[PaymentError])
    with pytest.raises(StepExecutionError) as info:
        await step.run("pay", declined, retry_policy=policy)
    assert calls == [1]
    assert fake_sleep.delays == []
    assert info.value.attempts == 1
    assert info.value.error_type == f"{__name__}.CardExpired"
    assert recorder.records[0].attempts == 1


async def test_step_retry__default_policy_three_attempts_with_jitter(
    fake_sleep: FakeSleep,
) -> None:
    calls: list[int] = []

    def broken() -> None:
        calls.append(1)
        raise RuntimeError("no")

    step, recorder = _step(fake_sleep, rng=random.Random(7))
    with pytest.raises(StepExecutionError):
        await step.run("x", broken)
    assert len(calls) == 3
    first, second = fake_sleep.delays
    assert 0.8 <= first <= 1.2
    assert 1.6 <= second <= 2.4
    assert recorder.records[0].attempts == 3


async def test_step_retry__max_attempts_one_never_sleeps(fake_sleep: FakeSleep) -> None:
    step, recorder = _step(fake_sleep)
    with pytest.raises(StepExecutionError):
        await step.run("x", _raise_runtime_error, retry_policy=RetryPolicy(max_attempts=1))
    assert fake_sleep.delays == []
    assert recorder.records[0].attempts == 1


def _raise_runtime_error() -> None:
    raise RuntimeError("no")


# ---------------------------------------------------------------------- workflow retry


async def test_workflow_retry__non_retryable_error_marks_outcome() -> None:
    policy = RetryPolicy(max_attempts=3, non_retryable_errors=[PaymentError])

    @workflow(retry=policy)
    async def wf(ctx: WorkflowContext, kind: str) -> None:
        if kind == "payment":
            raise PaymentError("declined")
        raise RuntimeError("flaky")

    payment, _ = await run_once(wf, "payment")
    assert not payment.completed
    assert payment.retryable is False
    assert payment.error is not None
    assert payment.error.type == f"{__name__}.PaymentError"

    flaky, _ = await run_once(wf, "other")
    assert flaky.retryable is True
    assert flaky.error is not None
    assert flaky.error.type == "RuntimeError"
    assert wf.spec().retry == policy.to_spec()
