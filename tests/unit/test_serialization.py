"""JSON encoding of step outputs and results, and rebuilding them with their types."""

from __future__ import annotations

import dataclasses
import enum
import functools
import uuid
from collections.abc import Awaitable, Coroutine
from datetime import UTC, datetime
from typing import Any

import pydantic
import pytest

from polos import SerializationError, WorkflowContext, workflow
from polos.sdk import from_json_value, to_json_value, type_name
from polos.sdk._serialize import return_annotation
from polos.testing import replay, run_once


class Money(pydantic.BaseModel):
    """A model value."""

    amount: int
    currency: str = "EUR"


@dataclasses.dataclass
class Point:
    """A dataclass value."""

    x: int
    y: int


class Color(enum.Enum):
    """An enum value."""

    RED = "red"


class Outer:
    """A namespace, to check that nested classes get their qualified name."""

    class Inner(pydantic.BaseModel):
        """A nested model."""

        value: int


# ---------------------------------------------------------------------- to_json_value


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("s", "s"),
        (3, 3),
        (2.5, 2.5),
        (True, True),
        ([1, "a"], [1, "a"]),
        ({"k": [1, 2]}, {"k": [1, 2]}),
        (Money(amount=5), {"amount": 5, "currency": "EUR"}),
        (Point(1, 2), {"x": 1, "y": 2}),
        (datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC), "2024-01-02T03:04:05Z"),
        (uuid.UUID(int=1), "00000000-0000-0000-0000-000000000001"),
        (Color.RED, "red"),
        ((1, 2), [1, 2]),
        ({3}, [3]),
    ],
)
def test_to_json_value__supported_values(value: Any, expected: Any) -> None:
    assert to_json_value(value, "test") == expected


def test_to_json_value__unsupported_value_raises_serialization_error() -> None:
    with pytest.raises(SerializationError, match=r"step 'x' returned a object"):
        to_json_value(object(), "step 'x'")


# ---------------------------------------------------------------------- type_name


def test_type_name__recorded_for_values_json_cannot_rebuild() -> None:
    assert type_name(datetime(2024, 1, 1, tzinfo=UTC)) == "datetime:datetime"
    assert type_name((1, 2)) == "builtins:tuple"
    assert type_name([1, 2]) is None
    assert type_name("x") is None
    assert type_name(Money(amount=1)) == f"{__name__}:Money"
    assert type_name(Point(1, 2)) == f"{__name__}:Point"
    assert type_name(Outer.Inner(value=1)) == f"{__name__}:Outer.Inner"
    assert type_name(Point) is None  # the class itself is not a value
    assert type_name({"a": 1}) is None
    assert type_name(7) is None
    assert type_name(None) is None


# ---------------------------------------------------------------------- from_json_value


def test_from_json_value__by_annotation() -> None:
    assert from_json_value({"amount": 3}, None, Money) == Money(amount=3)
    assert from_json_value({"x": 1, "y": 2}, None, Point) == Point(1, 2)
    assert from_json_value([1, 2], None, tuple[int, int]) == (1, 2)
    assert from_json_value("2024-01-02T03:04:05Z", None, datetime) == datetime(
        2024, 1, 2, 3, 4, 5, tzinfo=UTC
    )
    assert from_json_value("red", None, Color) is Color.RED


def test_from_json_value__by_recorded_type() -> None:
    rebuilt = from_json_value({"amount": 3}, f"{__name__}:Money")
    assert type(rebuilt) is Money
    assert rebuilt == Money(amount=3)
    nested = from_json_value({"value": 4}, f"{__name__}:Outer.Inner")
    assert type(nested) is Outer.Inner


def test_from_json_value__annotation_wins_over_recorded_type() -> None:
    rebuilt = from_json_value({"x": 1, "y": 2}, f"{__name__}:Money", Point)
    assert rebuilt == Point(1, 2)


def test_from_json_value__falls_back_to_recorded_type_then_json() -> None:
    # The annotation does not fit the value: the recorded class is used.
    assert type(from_json_value({"amount": 1}, f"{__name__}:Money", int)) is Money
    # Neither fits (or the class cannot be imported): the plain JSON comes back.
    assert from_json_value({"a": 1}, "no.such.module:Thing", int) == {"a": 1}
    assert from_json_value({"a": 1}, None) == {"a": 1}


@pytest.mark.parametrize("annotation", [Any, None, type(None), object])
def test_from_json_value__useless_annotations_ignored(annotation: Any) -> None:
    assert type(from_json_value({"amount": 2}, f"{__name__}:Money", annotation)) is Money


# ---------------------------------------------------------------------- return_annotation


def _returns_money() -> Money:
    return Money(amount=1)


async def _async_returns_money() -> Money:
    return Money(amount=1)


def _returns_awaitable() -> Awaitable[Money]:
    return _async_returns_money()


def _returns_coroutine() -> Coroutine[Any, Any, Point]:
    raise NotImplementedError


def _unannotated():
    return None


def _takes_arg(a: int) -> Point:
    return Point(a, a)


def test_return_annotation__resolves_and_unwraps() -> None:
    assert return_annotation(_returns_money) is Money
    assert return_annotation(_async_returns_money) is Money
    assert return_annotation(_returns_awaitable) is Money
    assert return_annotation(_returns_coroutine) is Point
    assert return_annotation(functools.partial(_takes_arg, 1)) is Point
    assert return_annotation(functools.partial(functools.partial(_takes_arg), 1)) is Point
    assert return_annotation(_unannotated) is Any
    assert return_annotation(lambda: 1) is Any


def test_return_annotation__unresolvable_is_any() -> None:
    def broken() -> NoSuchName:  # type: ignore[name-defined]  # noqa: F821
        return None

    assert return_annotation(broken) is Any


# ---------------------------------------------------------------------- through a workflow


async def test_serialization__unserializable_step_output_fails_workflow() -> None:
    @workflow
    async def wf(ctx: WorkflowContext) -> None:
        await ctx.step.run("bad", object)

    outcome, recorder = await run_once(wf)
    assert not outcome.completed
    assert outcome.retryable is False
    assert outcome.error is not None
    assert outcome.error.type == "polos.errors.SerializationError"
    assert "step 'bad'" in outcome.error.message
    assert recorder.records == []


async def test_serialization__unserializable_workflow_result_fails_workflow() -> None:
    @workflow
    async def wf(ctx: WorkflowContext) -> object:
        return object()

    outcome, _ = await run_once(wf)
    assert not outcome.completed
    assert outcome.retryable is False
    assert outcome.error is not None
    assert outcome.error.type == "polos.errors.SerializationError"
    assert "workflow 'wf'" in outcome.error.message


async def test_serialization__workflow_result_stored_as_json_and_parsed_back() -> None:
    @workflow
    async def wf(ctx: WorkflowContext) -> Money:
        return Money(amount=9, currency="USD")

    outcome, _ = await run_once(wf)
    assert outcome.result == {"amount": 9, "currency": "USD"}
    assert wf.parse_result(outcome.result) == Money(amount=9, currency="USD")


async def test_serialization__dataclass_step_output_round_trips_on_replay() -> None:
    seen: list[Any] = []

    @workflow
    async def wf(ctx: WorkflowContext) -> None:
        seen.append(await ctx.step.run("p", lambda: Point(3, 4)))

    _, recorder = await run_once(wf)
    assert recorder.records[0].output == {"x": 3, "y": 4}
    assert recorder.records[0].output_type == f"{__name__}:Point"
    await replay(wf, None, recorder.records)
    assert seen == [Point(3, 4), Point(3, 4)]
    assert type(seen[1]) is Point
