"""Flow control in the SDK: Queue / RateLimit declarations and ctx.step.acquire in memory."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from polos import (
    ConfigurationError,
    Queue,
    RateLimit,
    RateLimitGrant,
    RetryPolicy,
    WaitTimeoutError,
    WorkflowContext,
    queue,
    workflow,
)
from polos.protocol import AcquireSpec, ErrorInfo, StepKind, StepRecord, WaitKind
from polos.testing import MemoryRecorder, run_once

NO_RETRY = RetryPolicy(max_attempts=1)
TPM = RateLimit("openai-tpm", limit=1000, period=timedelta(minutes=1))


# ---------------------------------------------------------------------- declarations


def test_queue__declaration_lands_in_the_workflow_options() -> None:
    q = Queue("openai", concurrency_limit=5, per_key_limit=2, rate_limit=TPM)

    @workflow(queue=q)
    async def wf(ctx: WorkflowContext) -> None: ...

    assert wf.spec().options["queue"] == {
        "name": "openai",
        "concurrency_limit": 5,
        "per_key_limit": 2,
        "rate_limit": {"name": "openai-tpm", "limit": 1000, "period_ms": 60_000},
    }


def test_queue__name_string_and_dict_forms() -> None:
    @workflow(queue="emails")
    async def by_name(ctx: WorkflowContext) -> None: ...

    @workflow(queue={"name": "emails", "concurrency_limit": 3})
    async def by_dict(ctx: WorkflowContext) -> None: ...

    assert by_name.spec().options["queue"] == {"name": "emails"}
    assert by_dict.spec().options["queue"] == {"name": "emails", "concurrency_limit": 3}
    assert queue("q", 2, per_key_limit=1) == Queue("q", 2, per_key_limit=1)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Queue("bad name"), "queue name"),
        (lambda: Queue(""), "queue name"),
        (lambda: Queue("q", concurrency_limit=0), "concurrency_limit"),
        (lambda: Queue("q", per_key_limit=-1), "per_key_limit"),
        (lambda: Queue("q", concurrency_limit=True), "concurrency_limit"),  # type: ignore[arg-type]
        (lambda: Queue("q", rate_limit="rpm"), "RateLimit"),  # type: ignore[arg-type]
        (lambda: RateLimit("r", limit=0), "limit"),
        (lambda: RateLimit("r", limit=1, period=0), "period"),
        (lambda: RateLimit("r", limit=1, period=timedelta(days=40)), "period"),
        (lambda: RateLimit("r r", limit=1), "rate limit name"),
    ],
)
def test_declarations__bad_values_raise_configuration_errors(make: Any, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        make()


def test_queue__bad_dict_names_the_problem() -> None:
    with pytest.raises(ConfigurationError, match="concurrency_limit"):

        @workflow(queue={"name": "q", "concurrency_limit": 0})
        async def wf(ctx: WorkflowContext) -> None: ...


# ---------------------------------------------------------------------- acquire


@workflow(retry=NO_RETRY)
async def spender(ctx: WorkflowContext, payload: dict[str, Any]) -> list[Any]:
    out = []
    for _ in range(payload.get("times", 1)):
        grant = await ctx.step.acquire(payload.get("limit", "openai-tpm"), units=payload["units"])
        out.append((grant.limit, grant.units))
    return out


async def test_acquire__granted_at_once_continues_and_is_recorded() -> None:
    outcome, recorder = await run_once(spender, {"units": 30, "times": 2})

    assert outcome.completed and outcome.result == [["openai-tpm", 30], ["openai-tpm", 30]]
    assert [(r.key, r.kind) for r in recorder.records] == [
        ("acquire:openai-tpm", StepKind.ACQUIRE),
        ("acquire:openai-tpm#2", StepKind.ACQUIRE),
    ]


async def test_acquire__without_room_parks_with_the_request() -> None:
    outcome, recorder = await run_once(
        spender, {"units": 30}, recorder=MemoryRecorder(grant_acquires=False)
    )

    assert outcome.parked
    parked = recorder.parked
    assert parked is not None and parked.spec.kind == WaitKind.ACQUIRE
    request = AcquireSpec.model_validate(parked.spec.data)
    assert (request.limit, request.units, request.key, request.define) == (
        "openai-tpm",
        30,
        "",
        None,
    )


async def test_acquire__replay_returns_the_recorded_grant_without_asking_again() -> None:
    history = [
        StepRecord(
            key="acquire:openai-tpm",
            seq=1,
            kind=StepKind.ACQUIRE,
            output={"limit": "openai-tpm", "units": 30, "key": "", "granted_at": 1_700_000_000_000},
        )
    ]
    recorder = MemoryRecorder(grant_acquires=False)
    outcome, _ = await run_once(spender, {"units": 30}, history=history, recorder=recorder)

    assert outcome.completed and recorder.parked is None and not recorder.records


@workflow(retry=NO_RETRY)
async def with_object(ctx: WorkflowContext, payload: dict[str, Any]) -> Any:
    try:
        grant = await ctx.step.acquire(TPM, units=5, key="tenant-1", timeout=2)
    except WaitTimeoutError as exc:
        return f"timed out at {exc.step_key}"
    assert isinstance(grant, RateLimitGrant)
    return grant.key


async def test_acquire__a_rate_limit_object_defines_it_and_keys_and_deadline_travel() -> None:
    _, recorder = await run_once(with_object, {}, recorder=MemoryRecorder(grant_acquires=False))
    assert recorder.parked is not None
    request = AcquireSpec.model_validate(recorder.parked.spec.data)
    assert request.define is not None and request.define.limit == 1000
    assert request.key == "tenant-1" and request.deadline is not None


async def test_acquire__a_recorded_timeout_raises_wait_timeout_error() -> None:
    history = [
        StepRecord(
            key="acquire:openai-tpm",
            seq=1,
            kind=StepKind.ACQUIRE,
            error=ErrorInfo(type="polos.WaitTimeoutError", message="timed out"),
        )
    ]
    outcome, _ = await run_once(with_object, {}, history=history)
    assert outcome.completed and outcome.result == "timed out at acquire:openai-tpm"


@pytest.mark.parametrize("units", [0, -3, True, 1.5])
async def test_acquire__bad_units_fail_the_workflow_clearly(units: Any) -> None:
    outcome, _ = await run_once(spender, {"units": units})
    assert not outcome.completed and outcome.error is not None
    assert "acquire units must be a positive integer" in outcome.error.message
