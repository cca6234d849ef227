"""``@workflow``: ids, signatures, options, spec, payload validation, sync workflows."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pydantic
import pytest

from polos import (
    ConfigurationError,
    PayloadValidationError,
    Queue,
    RetryPolicy,
    Workflow,
    WorkflowContext,
    queue,
    workflow,
)
from polos.sdk import fingerprint
from polos.testing import replay, run_once

if TYPE_CHECKING:
    from polos import WorkflowContext as TypeCheckingOnlyContext


class Address(pydantic.BaseModel):
    """Nested payload model."""

    city: str


class Order(pydantic.BaseModel):
    """Payload model."""

    order_id: str
    quantity: int = pydantic.Field(gt=0)
    address: Address | None = None


class Settings(pydantic.BaseModel):
    """A state schema."""

    count: int = 0


# ---------------------------------------------------------------------- forms of the decorator


def test_workflow__bare_decorator_uses_function_name_and_docstring() -> None:
    @workflow
    async def send_invoice(ctx: WorkflowContext) -> None:
        """Send the invoice."""

    assert isinstance(send_invoice, Workflow)
    assert send_invoice.id == "send_invoice"
    assert send_invoice.description == "Send the invoice."
    assert send_invoice.is_async
    assert send_invoice.takes_payload is False
    assert send_invoice.kind == "workflow"
    assert repr(send_invoice) == "Workflow(id='send_invoice')"


def test_workflow__decorator_with_arguments() -> None:
    policy = RetryPolicy(max_attempts=4)

    @workflow(id="billing/charge-v2.1:eu", description="Charges.", retry=policy)
    async def charge(ctx: WorkflowContext, payload: dict[str, Any]) -> None:
        """Docstring loses to description."""

    assert charge.id == "billing/charge-v2.1:eu"
    assert charge.description == "Charges."
    assert charge.retry is policy
    assert charge.takes_payload is True


def test_workflow__empty_description_kept() -> None:
    @workflow(description="")
    async def wf(ctx: WorkflowContext) -> None:
        """Docstring."""

    assert wf.description == ""


def test_workflow__call_runs_the_undecorated_function() -> None:
    @workflow
    def add(ctx: Any, payload: int) -> int:
        return payload + 1

    assert add("ctx", 1) == 2


@pytest.mark.parametrize(
    "bad_id", ["", "has space", "ümlaut", "semi;colon", "x" * 201, "tab\there"]
)
def test_workflow__invalid_id_rejected(bad_id: str) -> None:
    async def wf(ctx: WorkflowContext) -> None:
        pass

    with pytest.raises(ConfigurationError, match="workflow id"):
        workflow(id=bad_id)(wf)


def test_workflow__longest_id_accepted() -> None:
    async def wf(ctx: WorkflowContext) -> None:
        pass

    assert workflow(id="x" * 200)(wf).id == "x" * 200


def test_workflow__lambda_needs_an_explicit_id() -> None:
    with pytest.raises(ConfigurationError, match="<lambda>"):
        workflow(lambda ctx: None)
    assert workflow(id="anon")(lambda ctx: None).id == "anon"


# ---------------------------------------------------------------------- signatures


async def _no_args() -> None:
    pass


async def _three_args(ctx: Any, a: Any, b: Any) -> None:
    pass


async def _var_args(ctx: Any, *args: Any) -> None:
    pass


async def _var_kwargs(ctx: Any, **kwargs: Any) -> None:
    pass


async def _keyword_only(ctx: Any, *, payload: Any) -> None:
    pass


async def _extra_keyword(ctx: Any, payload: Any, *, debug: bool = False) -> None:
    pass


@pytest.mark.parametrize(
    "fn", [_no_args, _three_args, _var_args, _var_kwargs, _keyword_only, _extra_keyword]
)
def test_workflow__bad_signature_rejected(fn: Any) -> None:
    with pytest.raises(ConfigurationError, match=r"must take \(ctx\) or \(ctx, payload\)"):
        workflow(fn)


def test_workflow__positional_only_and_defaults_accepted() -> None:
    async def positional(ctx: Any, payload: Any = None, /) -> None:
        pass

    assert workflow(positional).takes_payload is True


# ---------------------------------------------------------------------- options


def test_workflow__options_stored() -> None:
    @workflow(
        queue="emails",
        trigger_on_event="user.signed_up",
        batch_size=10,
        batch_timeout_seconds=2.5,
        timeout=timedelta(minutes=2),
    )
    async def wf(ctx: WorkflowContext) -> None:
        pass

    assert wf.options == {
        "queue": {"name": "emails"},
        "trigger_on_event": "user.signed_up",
        "batch_size": 10,
        "batch_timeout_seconds": 2.5,
        "timeout_seconds": 120.0,
    }


def test_workflow__unset_options_omitted() -> None:
    @workflow
    async def wf(ctx: WorkflowContext) -> None:
        pass

    assert wf.options == {}
    assert wf.spec().options == {}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("q", {"name": "q"}),
        (Queue("q", 3), {"name": "q", "concurrency_limit": 3}),
        (queue("q"), {"name": "q"}),
        ({"name": "q", "concurrency_limit": 1}, {"name": "q", "concurrency_limit": 1}),
    ],
)
def test_workflow__queue_forms(value: Any, expected: dict[str, Any]) -> None:
    wf = workflow(queue=value)(_one_arg)
    assert wf.options["queue"] == expected


async def _one_arg(ctx: Any) -> None:
    pass


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, True),
        (False, None),
        (
            "*/5 * * * *",
            {
                "cron": "*/5 * * * *",
                "timezone": "UTC",
                "key": "global",
                "catchup": "once",
                "overlap": "skip",
            },
        ),
        (
            {"cron": "0 9 * * 1", "timezone": "Europe/Paris"},
            {
                "cron": "0 9 * * 1",
                "timezone": "Europe/Paris",
                "key": "global",
                "catchup": "once",
                "overlap": "skip",
            },
        ),
    ],
)
def test_workflow__schedule_forms(value: Any, expected: Any) -> None:
    assert workflow(schedule=value)(_one_arg).options.get("schedule") == expected


@pytest.mark.parametrize(
    "kwargs",
    [
        {"queue": 5},
        {"batch_size": 0},
        {"max_recovery_attempts": 0},
    ],
)
def test_workflow__invalid_options_rejected(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        workflow(**kwargs)(_one_arg)


@pytest.mark.parametrize("schema", [dict, int, Settings(), "Settings"])
def test_workflow__state_schema_must_be_a_base_model(schema: Any) -> None:
    with pytest.raises(ConfigurationError, match="state_schema"):
        workflow(state_schema=schema)(_one_arg)


def test_workflow__state_schema_stored() -> None:
    assert workflow(state_schema=Settings)(_one_arg).state_schema is Settings


# ---------------------------------------------------------------------- spec()


def test_workflow__spec_content() -> None:
    policy = RetryPolicy(max_attempts=2, initial_interval=3, jitter=0)

    @workflow(
        id="spec-me",
        queue=Queue("q", 2),
        trigger_on_event="evt",
        retry=policy,
        max_recovery_attempts=5,
    )
    async def wf(ctx: WorkflowContext) -> None:
        """Spec docstring."""

    spec = wf.spec()
    assert spec.id == "spec-me"
    assert spec.kind == "workflow"
    assert spec.fingerprint == wf.fingerprint
    assert spec.retry == policy.to_spec()
    assert spec.max_recovery_attempts == 5
    assert spec.description == "Spec docstring."
    assert spec.options == {
        "queue": {"name": "q", "concurrency_limit": 2},
        "trigger_on_event": "evt",
    }


def test_workflow__default_spec_retry_and_recovery() -> None:
    spec = workflow(_one_arg).spec()
    assert spec.retry.max_attempts == 1
    assert spec.max_recovery_attempts == 20


def test_workflow__fingerprint_changes_with_source() -> None:
    async def body_a(ctx: WorkflowContext) -> int:
        return 1

    async def body_b(ctx: WorkflowContext) -> int:
        return 2

    a = workflow(id="same")(body_a)
    b = workflow(id="same")(body_b)
    assert a.fingerprint != b.fingerprint
    assert a.spec().fingerprint != b.spec().fingerprint
    assert len(a.fingerprint) == 16
    int(a.fingerprint, 16)
    # Deterministic for the same function.
    assert workflow(id="same")(body_a).fingerprint == a.fingerprint == fingerprint(body_a)


def test_fingerprint__falls_back_to_bytecode_without_source() -> None:
    def compiled(source: str) -> Any:
        namespace: dict[str, Any] = {}
        exec(compile(source, "<generated>", "exec"), namespace)
        return namespace["wf"]

    one = compiled("async def wf(ctx):\n    return 1\n")
    same = compiled("async def wf(ctx):\n    return 1\n")
    other = compiled("async def wf(ctx):\n    return 2\n")
    assert fingerprint(one) == fingerprint(same)
    assert fingerprint(one) != fingerprint(other)


# ---------------------------------------------------------------------- payload validation


async def test_payload__validated_into_annotated_model() -> None:
    seen: list[Any] = []

    @workflow
    async def place(ctx: WorkflowContext, order: Order) -> int:
        seen.append(order)
        return order.quantity

    outcome, _ = await run_once(place, {"order_id": "o-1", "quantity": "3"})
    assert outcome.completed
    assert outcome.result == 3
    assert type(seen[0]) is Order
    assert seen[0] == Order(order_id="o-1", quantity=3)


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"order_id": "o-1", "quantity": "many"}, "quantity"),
        ({"order_id": "o-1", "quantity": 0}, "quantity"),
        ({"quantity": 1}, "order_id"),
        ({"order_id": "o", "quantity": 1, "address": {"town": "x"}}, "address.city"),
    ],
)
async def test_payload__invalid_fails_non_retryable(payload: Any, field: str) -> None:
    ran: list[int] = []

    @workflow(retry=RetryPolicy(max_attempts=5))
    async def place(ctx: WorkflowContext, order: Order) -> None:
        ran.append(1)

    outcome, recorder = await run_once(place, payload)
    assert not outcome.completed
    assert outcome.retryable is False
    assert outcome.error is not None
    assert outcome.error.type == "polos.errors.PayloadValidationError"
    assert f"{field}:" in outcome.error.message
    assert "payload of workflow 'place' is invalid" in outcome.error.message
    assert ran == []
    assert recorder.records == []


async def test_payload__non_object_payload_names_the_payload() -> None:
    @workflow
    async def place(ctx: WorkflowContext, order: Order) -> None:
        pass

    outcome, _ = await run_once(place, 42)
    assert outcome.error is not None
    assert outcome.error.type == "polos.errors.PayloadValidationError"
    assert "(payload):" in outcome.error.message


def test_payload__parse_payload_raises_payload_validation_error() -> None:
    @workflow
    async def place(ctx: WorkflowContext, order: Order) -> None:
        pass

    with pytest.raises(PayloadValidationError, match="quantity"):
        place.parse_payload({"order_id": "x", "quantity": -1})


async def test_payload__unannotated_payload_passed_as_is() -> None:
    seen: list[Any] = []

    @workflow
    async def wf(ctx, payload):  # type: ignore[no-untyped-def]
        seen.append(payload)

    raw = {"anything": [1, 2]}
    outcome, _ = await run_once(wf, raw)
    assert outcome.completed
    assert seen == [raw]


async def test_payload__scalar_annotation_validated() -> None:
    @workflow
    async def double(ctx: WorkflowContext, n: int) -> int:
        return n * 2

    ok, _ = await run_once(double, "21")
    assert ok.result == 42
    bad, _ = await run_once(double, "twenty")
    assert bad.error is not None
    assert bad.error.type == "polos.errors.PayloadValidationError"


# ---------------------------------------------------------------------- sync workflows


async def test_sync_workflow__runs_in_a_thread_with_run_sync() -> None:
    calls: list[int] = []
    threads: list[int] = []

    def lookup(x: int) -> int:
        calls.append(x)
        return x + 1

    @workflow
    def compute(ctx: WorkflowContext, x: int) -> int:
        threads.append(threading.get_ident())
        first = ctx.step.run_sync("lookup", lookup, x)
        second = ctx.step.run_sync("lookup", lookup, first)
        return first * 100 + second

    assert not compute.is_async
    outcome, recorder = await run_once(compute, 4)
    assert outcome.completed, outcome.error
    assert outcome.result == 506
    assert calls == [4, 5]
    assert threads[0] != threading.get_ident()
    assert [(r.key, r.output) for r in recorder.records] == [("lookup", 5), ("lookup#2", 6)]

    again = await replay(compute, 4, recorder.records)
    assert again.result == 506
    assert calls == [4, 5]


async def test_sync_workflow__recorded_values_and_errors() -> None:
    @workflow
    def wf(ctx: WorkflowContext) -> str:
        ident = ctx.step.uuid("id")
        ctx.step.run_sync("fail", _raise_key_error, retry_policy=RetryPolicy(max_attempts=1))
        return ident

    outcome, recorder = await run_once(wf)
    assert not outcome.completed
    assert outcome.error is not None
    assert outcome.error.type == "polos.errors.StepExecutionError"
    assert [r.key for r in recorder.records] == ["id", "fail"]


def _raise_key_error() -> None:
    raise KeyError("missing")


async def test_sync_workflow__run_sync_rejected_in_async_workflow() -> None:
    @workflow
    async def wf(ctx: WorkflowContext) -> None:
        ctx.step.run_sync("x", lambda: None)

    outcome, recorder = await run_once(wf)
    assert outcome.error is not None
    assert outcome.error.type == "polos.errors.ConfigurationError"
    assert "synchronous workflow" in outcome.error.message
    assert recorder.records == []


async def _ctx_type_only_for_type_checkers(ctx: TypeCheckingOnlyContext, order: Order) -> str:
    return type(order).__name__


async def test_payload__validated_when_ctx_annotation_is_type_checking_only() -> None:
    outcome, _ = await run_once(
        workflow(_ctx_type_only_for_type_checkers), {"order_id": "o", "quantity": 1}
    )
    assert outcome.completed
    assert outcome.result == "Order"
