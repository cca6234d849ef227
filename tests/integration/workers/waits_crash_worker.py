"""Workflows that wait, for the crash and replica tests (``test_waits_crash.py``).

Started as a real process (``python waits_crash_worker.py``) so the tests can
``kill -9`` it while executions wait.

Environment:
    POLOS_API_URL: the orchestrator(s) (read by ``PolosClient``).
    SIDE_LOG: file that side-effect steps append ``<what> <execution id> <pid>`` lines to.
    MAX_CONCURRENT: the worker's ``max_concurrent`` (default 100).
"""

from __future__ import annotations

import asyncio
import os
import time
from datetime import timedelta

from pydantic import BaseModel

from polos import (
    BatchWorkflowInput,
    EventPayload,
    PolosClient,
    RetryPolicy,
    WaitTimeoutError,
    Worker,
    WorkflowContext,
    current_step,
    workflow,
)

NO_RETRY = RetryPolicy(max_attempts=1)


def side_log(line: str) -> None:
    """Append one line to the side-effect log (the ground truth of what really ran)."""
    path = os.environ.get("SIDE_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(line + "\n")


# ---------------------------------------------------------------------- the seed README scenario


class ProcessOrderInput(BaseModel):
    id: str
    amount: float
    items: list[str] = []
    gate: str | None = None
    pause: float = 0.0


class ProcessOrderOutput(BaseModel):
    status: str
    payment_id: str | None = None
    reason: str | None = None


class Payment(BaseModel):
    id: str


async def charge_stripe(order: ProcessOrderInput) -> Payment:
    step = current_step()
    side_log(f"charge {step.execution_id} {os.getpid()}")
    return Payment(id=f"pay_{order.id}")


async def send_shipping_email(order: ProcessOrderInput) -> None:
    step = current_step()
    side_log(f"notify {step.execution_id} {os.getpid()}")


async def pause(order: ProcessOrderInput) -> None:
    """Waits for the file ``order.gate`` (if any), then sleeps ``order.pause`` seconds."""
    step = current_step()
    side_log(f"pause {step.execution_id} {os.getpid()}")
    if order.gate is not None:
        await _wait_for_file(order.gate)
    await asyncio.sleep(order.pause)


async def _wait_for_file(path: str) -> None:
    while not os.path.exists(path):
        await asyncio.sleep(0.02)


@workflow(trigger_on_event="order/new")
async def process_order(ctx: WorkflowContext, order: ProcessOrderInput) -> ProcessOrderOutput:
    """The seed README's workflow, with the agent call replaced by a plain step."""
    validation = await ctx.step.run("validate_order", lambda: {"valid": order.amount > 0})
    if not validation["valid"]:
        return ProcessOrderOutput(status="invalid", reason="amount must be positive")
    if order.amount > 1000:
        decision = await ctx.step.suspend(
            "approval", data={"id": order.id, "amount": order.amount, "items": order.items}
        )
        if not decision.data["approved"]:
            return ProcessOrderOutput(status="rejected")
    payment = await ctx.step.run("charge", charge_stripe, order)
    await ctx.step.wait_for_event("wait_pickup", topic=f"warehouse.pickup/{order.id}")
    await ctx.step.run("notify", send_shipping_email, order)
    return ProcessOrderOutput(status="completed", payment_id=payment.id)


@workflow(id="paused_order")
async def paused_order(ctx: WorkflowContext, order: ProcessOrderInput) -> ProcessOrderOutput:
    """``process_order`` without approval, with a ``pause`` step between charge and the wait.

    The pause leaves a window to ``kill -9`` the worker after the charge was
    recorded and before the wait is registered.
    """
    payment = await ctx.step.run("charge", charge_stripe, order)
    await ctx.step.run("pause", pause, order)
    await ctx.step.wait_for_event("wait_pickup", topic=f"warehouse.pickup/{order.id}")
    await ctx.step.run("notify", send_shipping_email, order)
    return ProcessOrderOutput(status="completed", payment_id=payment.id)


# ---------------------------------------------------------------------- one workflow per wait


class WaitInput(BaseModel):
    timeout: float | None = None
    topic: str = "test/topic"
    seconds: float = 0.0


@workflow(id="approve", retry=NO_RETRY)
async def approve(ctx: WorkflowContext, payload: WaitInput) -> dict[str, object]:
    """Suspends; reports the decision, or 'timed_out' when the timeout passes first."""
    try:
        decision = await ctx.step.suspend("approval", data={"ask": "ok?"}, timeout=payload.timeout)
    except WaitTimeoutError as exc:
        side_log(f"timed_out {ctx.execution_id} {os.getpid()}")
        return {"outcome": "timed_out", "error": type(exc).__name__, "message": str(exc)}
    return {"outcome": "resumed", "data": decision.data}


@workflow(id="sleeper", retry=NO_RETRY)
async def sleeper(ctx: WorkflowContext, payload: WaitInput) -> dict[str, object]:
    """Sleeps ``seconds`` durably; returns when it started and woke (epoch seconds)."""
    started = ctx.step.now("started")
    await ctx.step.sleep("nap", timedelta(seconds=payload.seconds))
    woke = await ctx.step.run("woke", time.time)
    side_log(f"woke {ctx.execution_id} {os.getpid()}")
    return {"started": started.timestamp(), "woke": woke}


@workflow(id="event_waiter", retry=NO_RETRY)
async def event_waiter(ctx: WorkflowContext, payload: WaitInput) -> dict[str, object]:
    """Waits for one event on ``topic``; returns it (or 'timed_out')."""
    try:
        event = await ctx.step.wait_for_event("ev", topic=payload.topic, timeout=payload.timeout)
    except WaitTimeoutError:
        return {"outcome": "timed_out"}
    return {"outcome": "event", "seq": event.seq, "data": event.data, "id": event.id}


@workflow(id="on_ping", trigger_on_event="ping")
async def on_ping(ctx: WorkflowContext, event: EventPayload) -> dict[str, object]:
    """Started by each event on 'ping'."""
    side_log(f"ping {event.seq} {ctx.execution_id}")
    return {"seq": event.seq, "data": event.data}


@workflow(id="on_bulk", trigger_on_event="bulk", batch_size=3, batch_timeout_seconds=2.0)
async def on_bulk(ctx: WorkflowContext, items: list[dict[str, int]]) -> list[dict[str, int]]:
    """Started with up to three 'bulk' events at once (or fewer after two seconds)."""
    side_log(f"bulk {ctx.execution_id} {os.getpid()}")
    return items


# ---------------------------------------------------------------------- child workflows


class GatedInput(BaseModel):
    n: int
    gate: str


@workflow(id="gated_double")
async def gated_double(ctx: WorkflowContext, payload: GatedInput) -> int:
    """A child: blocks in a step until the file ``gate`` exists, then doubles ``n``."""
    side_log(f"child {ctx.execution_id} {os.getpid()}")
    await ctx.step.run("gate", _wait_for_file, payload.gate)
    return payload.n * 2


class ParentInput(BaseModel):
    numbers: list[int]
    gate: str


@workflow(id="parent_single")
async def parent_single(ctx: WorkflowContext, payload: ParentInput) -> int:
    """invoke_and_wait of one gated child."""
    result: int = await ctx.step.invoke_and_wait(
        "child", gated_double, GatedInput(n=payload.numbers[0], gate=payload.gate)
    )
    return result


@workflow(id="parent_batch")
async def parent_batch(ctx: WorkflowContext, payload: ParentInput) -> list[object]:
    """batch_invoke_and_wait of gated children, results in input order."""
    results = await ctx.step.batch_invoke_and_wait(
        "kids",
        [
            BatchWorkflowInput(gated_double, GatedInput(n=n, gate=payload.gate))
            for n in payload.numbers
        ],
    )
    return [r.result if r.success else f"error: {r.error}" for r in results]


worker = Worker(
    PolosClient(),
    workflows=[
        process_order,
        paused_order,
        approve,
        sleeper,
        event_waiter,
        on_ping,
        on_bulk,
        gated_double,
        parent_single,
        parent_batch,
    ],
    max_concurrent=int(os.environ.get("MAX_CONCURRENT", "100")),
)

if __name__ == "__main__":
    asyncio.run(worker.run())
