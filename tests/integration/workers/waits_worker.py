"""Workflows that wait: suspend, sleep, events, triggers and child workflows.

Started as a real process by the integration tests (``python waits_worker.py``) and
imported by them for the ``Workflow`` objects.

Environment:
    POLOS_API_URL: the orchestrator (read by ``PolosClient``).
    SIDE_LOG: file that side-effect steps append ``<what> <execution id> <pid>`` lines to.
"""

from __future__ import annotations

import asyncio
import os
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


class ProcessOrderInput(BaseModel):
    id: str
    amount: float
    items: list[str] = []


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
        return {"outcome": "timed_out", "message": str(exc)}
    return {"outcome": "resumed", "data": decision.data}


@workflow(id="sleeper")
async def sleeper(ctx: WorkflowContext, payload: WaitInput) -> dict[str, object]:
    """Sleeps ``seconds`` durably; returns when it started and woke (epoch ms)."""
    started = ctx.step.now("started")
    await ctx.step.sleep("nap", timedelta(seconds=payload.seconds))
    woke = await ctx.step.run("woke", lambda: __import__("time").time())
    side_log(f"woke {ctx.execution_id} {os.getpid()}")
    return {"started": started.timestamp(), "woke": woke}


@workflow(id="event_waiter", retry=NO_RETRY)
async def event_waiter(ctx: WorkflowContext, payload: WaitInput) -> dict[str, object]:
    """Waits for one event on ``topic``; returns it (or 'timed_out')."""
    try:
        event = await ctx.step.wait_for_event("ev", topic=payload.topic, timeout=payload.timeout)
    except WaitTimeoutError:
        return {"outcome": "timed_out"}
    return {"outcome": "event", "seq": event.seq, "data": event.data}


@workflow(id="publisher")
async def publisher(ctx: WorkflowContext, payload: WaitInput) -> dict[str, object]:
    """Publishes one event on ``topic`` (once, whatever happens)."""
    event = await ctx.step.publish_event("pub", topic=payload.topic, data={"from": ctx.execution_id})
    await ctx.step.run("after", asyncio.sleep, payload.seconds)
    return {"seq": event.seq}


@workflow(id="on_ping", trigger_on_event="ping")
async def on_ping(ctx: WorkflowContext, event: EventPayload) -> dict[str, object]:
    """Started by each event on 'ping'."""
    side_log(f"ping {event.seq} {ctx.execution_id}")
    return {"seq": event.seq, "data": event.data}


@workflow(id="on_bulk", trigger_on_event="bulk", batch_size=3, batch_timeout_seconds=1.0)
async def on_bulk(ctx: WorkflowContext, items: list[dict[str, int]]) -> int:
    """Started with up to three 'bulk' events at once (or fewer after one second)."""
    return len(items)


@workflow(id="double")
async def double(ctx: WorkflowContext, n: int) -> int:
    """A child: doubles ``n``; fails for negative numbers."""
    if n < 0:
        raise ValueError(f"negative: {n}")
    await ctx.step.run("work", asyncio.sleep, 0.05)
    return n * 2


@workflow(id="fan_out")
async def fan_out(ctx: WorkflowContext, numbers: list[int]) -> dict[str, object]:
    """Doubles every number in a child workflow, waits for all, keeps input order."""
    results = await ctx.step.batch_invoke_and_wait(
        "doubles", [BatchWorkflowInput(double, n) for n in numbers]
    )
    single = await ctx.step.invoke_and_wait("one", double, 21) if numbers else None
    return {
        "results": [r.result if r.success else f"error: {r.error.message}" for r in results],
        "single": single,
    }


@workflow(id="parent_of_sleepers")
async def parent_of_sleepers(ctx: WorkflowContext, n: int) -> None:
    """Starts ``n`` long sleepers and waits for them (cancelled by the tests)."""
    await ctx.step.batch_invoke_and_wait(
        "kids", [BatchWorkflowInput(sleeper, {"seconds": 3600}) for _ in range(n)]
    )


worker = Worker(
    PolosClient(),
    workflows=[
        process_order,
        approve,
        sleeper,
        event_waiter,
        publisher,
        on_ping,
        on_bulk,
        double,
        fan_out,
        parent_of_sleepers,
    ],
    max_concurrent=int(os.environ.get("MAX_CONCURRENT", "100")),
)

if __name__ == "__main__":
    asyncio.run(worker.run())
