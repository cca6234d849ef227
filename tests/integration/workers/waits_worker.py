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
    BatchEventPayload,
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
    event = await ctx.step.publish_event(
        "pub", topic=payload.topic, data={"from": ctx.execution_id}
    )
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


# ---------------------------------------------------------------------- added for test_waits.py


class GateInput(BaseModel):
    gate: str
    topic: str
    timeout: float | None = None


async def _wait_for_file(path: str) -> None:
    while not os.path.exists(path):
        await asyncio.sleep(0.02)


@workflow(id="gated_event_waiter", retry=NO_RETRY)
async def gated_event_waiter(ctx: WorkflowContext, payload: GateInput) -> dict[str, object]:
    """Runs a step that blocks until the file ``gate`` exists, then waits for an event."""
    await ctx.step.run("gate", _wait_for_file, payload.gate)
    event = await ctx.step.wait_for_event("ev", topic=payload.topic, timeout=payload.timeout)
    return {"seq": event.seq, "data": event.data, "topic": event.topic}


@workflow(id="approve_twice", retry=NO_RETRY)
async def approve_twice(ctx: WorkflowContext, payload: WaitInput) -> list[object]:
    """Suspends twice under the same key ('approval', then 'approval#2')."""
    first = await ctx.step.suspend("approval", data={"round": 1})
    second = await ctx.step.suspend("approval", data={"round": 2})
    return [first.data, second.data]


class TimerInput(BaseModel):
    past: float
    seconds: float = 0.2


@workflow(id="timers")
async def timers(ctx: WorkflowContext, payload: TimerInput) -> dict[str, float]:
    """wait_until a moment in the past (epoch ``past``), then wait_for ``seconds``."""
    import time
    from datetime import UTC, datetime

    await ctx.step.wait_until("past", datetime.fromtimestamp(payload.past, UTC))
    after_past = await ctx.step.run("after_past", time.time)
    await ctx.step.wait_for("short", seconds=payload.seconds)
    woke = await ctx.step.run("woke", time.time)
    return {"after_past": after_past, "woke": woke}


@workflow(id="make_payment")
async def make_payment(ctx: WorkflowContext, order: ProcessOrderInput) -> Payment:
    """A child with a pydantic result."""
    return Payment(id=f"pay_{order.id}")


class ChildCall(BaseModel):
    workflow: str
    payload: object = None
    mode: str = "wait"
    catch: bool = True


@workflow(id="call_child", retry=NO_RETRY)
async def call_child(ctx: WorkflowContext, call: ChildCall) -> dict[str, object]:
    """Starts one child (``invoke_and_wait``, or ``invoke`` with mode 'invoke').

    Reports the result with its Python type, or the error the step raised when
    ``catch`` is true (re-raises it otherwise).
    """
    from polos import ChildWorkflowError, WorkflowNotFoundError

    targets = {"double": double, "sleeper": sleeper, "make_payment": make_payment}
    target = targets.get(call.workflow, call.workflow)
    try:
        if call.mode == "invoke":
            handle = await ctx.step.invoke("child", target, call.payload)
            return {"handle": handle.model_dump()}
        result = await ctx.step.invoke_and_wait("child", target, call.payload)
    except ChildWorkflowError as exc:
        if not call.catch:
            raise
        return {
            "raised": "ChildWorkflowError",
            "child": exc.execution_id,
            "workflow_id": exc.workflow_id,
            "status": exc.status,
            "error_type": exc.error_type,
            "error_message": exc.error_message,
        }
    except WorkflowNotFoundError as exc:
        if not call.catch:
            raise
        return {"raised": "WorkflowNotFoundError", "message": str(exc)}
    dumped = result.model_dump() if isinstance(result, BaseModel) else result
    return {"type": type(result).__name__, "result": dumped}


@workflow(id="grandparent")
async def grandparent(ctx: WorkflowContext, numbers: list[int]) -> object:
    """Runs fan_out as a child: a three-level tree."""
    return await ctx.step.invoke_and_wait("middle", fan_out, numbers)


@workflow(id="grandparent_of_sleepers")
async def grandparent_of_sleepers(ctx: WorkflowContext, n: int) -> None:
    """Runs parent_of_sleepers as a child: a three-level tree that never ends by itself."""
    await ctx.step.invoke_and_wait("middle", parent_of_sleepers, n)


@workflow(id="publish_across_replay")
async def publish_across_replay(ctx: WorkflowContext, payload: WaitInput) -> dict[str, object]:
    """Publishes, suspends (the resume replays the publish step), publishes again."""
    first = await ctx.step.publish_event("pub", topic=payload.topic, data={"n": 1})
    await ctx.step.suspend("go")
    second = await ctx.step.publish_event("pub", topic=payload.topic, data={"n": 2})
    return {"first": first.model_dump(), "second": second.model_dump()}


@workflow(id="sync_waits", retry=NO_RETRY)
def sync_waits(ctx: WorkflowContext, payload: WaitInput) -> dict[str, object]:
    """A synchronous workflow using every ``_sync`` waiting twin."""
    decision = ctx.step.suspend_sync("approval", data={"sync": True})
    ctx.step.sleep_sync("nap", payload.seconds)
    event = ctx.step.wait_for_event_sync("ev", topic=payload.topic)
    published = ctx.step.publish_event_sync("pub", topic=payload.topic + "/out", data={"ok": 1})
    doubled = ctx.step.invoke_and_wait_sync("child", double, 5)
    return {
        "decision": decision.data,
        "event": event.data,
        "published_seq": published.seq,
        "doubled": doubled,
    }


@workflow(id="wait_while_running", retry=NO_RETRY)
async def wait_while_running(ctx: WorkflowContext, payload: WaitInput) -> dict[str, object]:
    """Tries to suspend while another step of the execution is still running (refused)."""
    from polos import ConfigurationError

    slow = asyncio.create_task(ctx.step.run("slow", asyncio.sleep, 0.3))
    await asyncio.sleep(0.05)
    try:
        await ctx.step.suspend("too_soon")
    except ConfigurationError as exc:
        message = str(exc)
    else:  # pragma: no cover - the bug this guards against
        message = ""
    await slow
    return {"message": message}


@workflow(
    id="on_bulk_events", trigger_on_event="bulk/meta", batch_size=2, batch_timeout_seconds=0.5
)
async def on_bulk_events(ctx: WorkflowContext, batch: BatchEventPayload) -> list[object]:
    """Started with up to two 'bulk/meta' events, with their metadata."""
    return [[e.topic, e.seq, e.data] for e in batch.events]


@workflow(id="mixed_batch", retry=NO_RETRY)
async def mixed_batch(ctx: WorkflowContext, n: int) -> dict[str, object]:
    """A batch naming an unregistered workflow (refused whole), then a valid one."""
    from polos import WorkflowNotFoundError

    try:
        await ctx.step.batch_invoke_and_wait(
            "kids", [BatchWorkflowInput(double, n), BatchWorkflowInput("no_such_workflow", n)]
        )
        first = "started"
    except WorkflowNotFoundError as exc:
        first = str(exc)
    results = await ctx.step.batch_invoke_and_wait("kids", [BatchWorkflowInput(double, n)])
    return {"first": first, "second": [r.result for r in results]}


class Counter(BaseModel):
    count: int = 0


@workflow(id="stateful_waits", state_schema=Counter, retry=NO_RETRY)
async def stateful_waits(ctx: WorkflowContext, payload: WaitInput) -> dict[str, object]:
    """Changes ``ctx.state`` around waits; each replay must see the recorded state."""
    ctx.state.count += 1
    await ctx.step.suspend("one")
    ctx.state.count += 10
    await ctx.step.run("mark", lambda: None)
    ctx.state.count += 100
    await ctx.step.wait_for_event("ev", topic=payload.topic)
    ctx.state.count += 1000
    return {"count": ctx.state.count}


ADDED_WORKFLOWS = [
    gated_event_waiter,
    approve_twice,
    timers,
    make_payment,
    call_child,
    grandparent,
    grandparent_of_sleepers,
    publish_across_replay,
    sync_waits,
    wait_while_running,
    on_bulk_events,
    mixed_batch,
    stateful_waits,
]


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
        *ADDED_WORKFLOWS,
    ],
    max_concurrent=int(os.environ.get("MAX_CONCURRENT", "100")),
)

if __name__ == "__main__":
    asyncio.run(worker.run())
