"""Workflow state (``state_schema``): snapshots in step records, in-place restore on replay."""

from __future__ import annotations

from typing import Any

import pydantic
import pytest

from polos import ConfigurationError, WorkflowContext, workflow
from polos.protocol import StepKind, StepRecord
from polos.sdk import StateBox
from polos.testing import replay, run_once


class Cart(pydantic.BaseModel):
    """The state of the shopping workflows below."""

    items: list[str] = []
    total: int = 0


class NeedsValue(pydantic.BaseModel):
    """A state schema without defaults (it cannot be built empty)."""

    required: int


def _shop(observed: list[Any], calls: list[str]) -> Any:
    @workflow(state_schema=Cart)
    async def shop(ctx: WorkflowContext) -> int:
        state = ctx.state  # a reference taken before any step

        def add_apple() -> str:
            calls.append("add_apple")
            state.items.append("apple")
            state.total += 3
            return "added"

        await ctx.step.run("add", add_apple)
        observed.append((state is ctx.state, list(state.items), state.total))
        await ctx.step.run("noop", lambda: None)
        return state.total

    return shop


async def test_state__mutation_in_step_is_snapshotted_in_its_record() -> None:
    observed: list[Any] = []
    calls: list[str] = []
    outcome, recorder = await run_once(_shop(observed, calls))
    assert outcome.completed
    assert outcome.result == 3
    add, noop = recorder.records
    assert add.has_state is True
    assert add.state == {"items": ["apple"], "total": 3}
    assert noop.has_state is False, "an unchanged state must not be snapshotted again"
    assert noop.state is None


async def test_state__restored_in_place_on_replay() -> None:
    observed: list[Any] = []
    calls: list[str] = []
    shop = _shop(observed, calls)
    first, recorder = await run_once(shop)
    assert first.completed

    second = await replay(shop, None, recorder.records)
    assert second.completed
    assert second.result == 3
    assert calls == ["add_apple"], "the step ran again on replay"
    assert observed == [(True, ["apple"], 3), (True, ["apple"], 3)]


async def test_state__replay_restores_the_recorded_snapshot() -> None:
    observed: list[Any] = []
    calls: list[str] = []
    history = [
        StepRecord(
            key="add",
            seq=1,
            kind=StepKind.RUN,
            output="added",
            has_state=True,
            state={"items": ["pear", "fig"], "total": 7},
        )
    ]
    outcome = await replay(_shop(observed, calls), None, history)
    assert outcome.completed
    assert outcome.result == 7
    assert calls == []
    assert observed == [(True, ["pear", "fig"], 7)]


async def test_state__mutation_outside_steps_is_captured_by_next_record() -> None:
    @workflow(state_schema=Cart)
    async def wf(ctx: WorkflowContext) -> None:
        ctx.state.total = 10
        await ctx.step.run("after", lambda: None)

    _, recorder = await run_once(wf)
    assert recorder.records[0].has_state
    assert recorder.records[0].state == {"items": [], "total": 10}


async def test_state__final_state_reported_in_outcome() -> None:
    @workflow(state_schema=Cart)
    async def wf(ctx: WorkflowContext) -> None:
        await ctx.step.run("first", lambda: None)
        ctx.state.items.append("late")

    outcome, recorder = await run_once(wf)
    assert outcome.completed
    assert outcome.has_state is True
    assert outcome.state == {"items": ["late"], "total": 0}
    assert recorder.records[0].has_state is False


async def test_state__unchanged_state_not_reported_in_outcome() -> None:
    @workflow(state_schema=Cart)
    async def wf(ctx: WorkflowContext) -> None:
        def change() -> None:
            ctx.state.total = 1

        await ctx.step.run("change", change)

    outcome, recorder = await run_once(wf)
    assert outcome.completed
    assert recorder.records[0].state == {"items": [], "total": 1}
    # Already durable with the step record: the outcome carries no new snapshot.
    assert outcome.has_state is False
    assert outcome.state is None


async def test_state__reported_when_workflow_fails() -> None:
    @workflow(state_schema=Cart)
    async def wf(ctx: WorkflowContext) -> None:
        ctx.state.total = 5
        raise RuntimeError("after changing state")

    outcome, _ = await run_once(wf)
    assert not outcome.completed
    assert outcome.has_state is True
    assert outcome.state == {"items": [], "total": 5}


async def test_state__initial_state_from_attempt_input() -> None:
    seen: list[Cart] = []

    @workflow(state_schema=Cart)
    async def wf(ctx: WorkflowContext) -> None:
        seen.append(ctx.state.model_copy(deep=True))

    outcome, _ = await run_once(wf, state={"items": ["saved"], "total": 2}, attempt=2)
    assert outcome.completed
    assert seen == [Cart(items=["saved"], total=2)]
    assert outcome.has_state is False


async def test_state__without_schema_ctx_state_raises() -> None:
    flags: list[bool] = []

    @workflow
    async def wf(ctx: WorkflowContext) -> None:
        flags.append(ctx.has_state)
        ctx.state

    outcome, recorder = await run_once(wf)
    assert flags == [False]
    assert outcome.error is not None
    assert outcome.error.type == "polos.errors.ConfigurationError"
    assert "state_schema" in outcome.error.message
    assert outcome.has_state is False
    assert recorder.records == []


async def test_state__schema_that_cannot_be_built_fails_the_attempt() -> None:
    @workflow(state_schema=NeedsValue)
    async def wf(ctx: WorkflowContext) -> None:
        pass

    # run_attempt promises an outcome for every ending but a lost lease or a cancellation.
    outcome, _ = await run_once(wf)
    assert not outcome.completed
    assert outcome.retryable is False
    assert outcome.error is not None
    assert "required" in outcome.error.message


async def test_state__recorded_state_not_matching_schema_fails_the_attempt() -> None:
    @workflow(state_schema=Cart)
    async def wf(ctx: WorkflowContext) -> None:
        pass

    outcome, _ = await run_once(wf, state={"total": "not a number"}, attempt=2)
    assert not outcome.completed
    assert outcome.retryable is False
    assert outcome.error is not None
    assert "total" in outcome.error.message


# ---------------------------------------------------------------------- StateBox


def test_state_box__snapshot_only_when_changed() -> None:
    cart = Cart()
    box = StateBox(cart, cart.model_dump_json())
    assert box.changed_snapshot() == (False, None)
    cart.total = 4
    assert box.changed_snapshot() == (True, {"items": [], "total": 4})
    assert box.changed_snapshot() == (False, None)


def test_state_box__restore_keeps_the_same_object() -> None:
    cart = Cart(items=["a"], total=1)
    items_before = cart.items
    box = StateBox(cart, cart.model_dump_json())
    box.restore({"items": ["b", "c"], "total": 9})
    assert box.model is cart
    assert cart == Cart(items=["b", "c"], total=9)
    assert items_before == ["a"], "restore must not mutate the old field values"
    assert box.changed_snapshot() == (False, None)


def test_state_box__without_model() -> None:
    box = StateBox(None, None)
    assert box.changed_snapshot() == (False, None)
    box.restore({"anything": 1})  # ignored
    assert box.model is None


def test_state__ctx_state_error_message() -> None:
    ctx = WorkflowContext(execution_id="e", workflow_id="w", attempt=1, step=None)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="state_schema"):
        ctx.state
