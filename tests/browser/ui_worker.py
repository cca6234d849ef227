"""Workflows and an agent for the browser tests: something of every kind for the UI to show.

Started as a real process (``python ui_worker.py``).

Environment:
    POLOS_API_URL: the orchestrator.
    FAKE_LLM_URL: the fake OpenAI server's base URL (``.../v1``) for the agent.
"""

from __future__ import annotations

import asyncio
import os
from datetime import timedelta
from typing import Any, TypeVar

from pydantic import BaseModel

from polos import (
    Agent,
    GuardrailResult,
    PolosClient,
    RetryPolicy,
    Worker,
    WorkflowContext,
    tool,
    workflow,
)
from polos.agents import GuardrailContext

NO_RETRY = RetryPolicy(max_attempts=1)
T = TypeVar("T")


class Order(BaseModel):
    id: str
    amount: float
    items: list[str] = []


async def _pause(seconds: float, value: T) -> T:
    await asyncio.sleep(seconds)
    return value


def _identity(value: int) -> int:
    return value


@workflow(id="price_quote")
async def price_quote(ctx: WorkflowContext, order: Order) -> dict[str, float]:
    """A child workflow: a few steps that price an order."""
    base = await ctx.step.run("base_price", _pause, 0.08, order.amount)
    tax = await ctx.step.run("tax", _pause, 0.05, round(order.amount * 0.2, 2))
    return {"total": base + tax}


@workflow(id="order_pipeline")
async def order_pipeline(ctx: WorkflowContext, order: Order) -> dict[str, object]:
    """Steps of several kinds, a child workflow and a durable sleep."""
    check = await ctx.step.run("validate", _pause, 0.05, {"valid": order.amount > 0})
    request_id = ctx.step.uuid("request_id")
    stock = await ctx.step.run(
        "check_inventory", _pause, 0.15, {i: "in stock" for i in order.items}
    )
    quote = await ctx.step.invoke_and_wait("quote", price_quote, order)
    await ctx.step.sleep("cool_off", timedelta(seconds=0.3))
    await ctx.step.publish_event("announce", topic="orders/priced", data={"id": order.id})
    receipt = await ctx.step.run("send_receipt", _pause, 0.1, f"receipt for {order.id}")
    return {
        "valid": check,
        "request": str(request_id),
        "stock": stock,
        "quote": quote,
        "receipt": receipt,
    }


class Count(BaseModel):
    count: int = 200


@workflow(id="many_steps")
async def many_steps(ctx: WorkflowContext, payload: Count) -> int:
    """``count`` quick steps (the timeline must stay fast with hundreds)."""
    total = 0
    for i in range(payload.count):
        total += await ctx.step.run(f"step_{i:03d}", _identity, i)
    return total


REFUND_FORM = {
    "title": "Approve this refund?",
    "fields": [
        {"name": "approved", "type": "boolean", "required": True, "label": "Approve the refund"},
        {"name": "amount", "type": "number", "required": True, "label": "Amount to refund"},
        {
            "name": "reason",
            "type": "select",
            "required": False,
            "options": ["damaged", "late", "other"],
        },
        {"name": "note", "type": "textarea", "required": False, "label": "Note to the customer"},
    ],
}


class Refund(BaseModel):
    customer: str
    amount: float


@workflow(id="refund_request", retry=NO_RETRY)
async def refund_request(ctx: WorkflowContext, refund: Refund) -> dict[str, object]:
    """Suspends with a declared form; returns what the human decided."""
    decision = await ctx.step.suspend(
        "review",
        data={"customer": refund.customer, "requested": refund.amount, "_form": REFUND_FORM},
    )
    data = decision.data if isinstance(decision.data, dict) else {}
    if data.get("approved"):
        await ctx.step.run("pay_out", _pause, 0.02, data.get("amount"))
    return {"decision": data}


@workflow(id="always_fails", retry=NO_RETRY)
async def always_fails(ctx: WorkflowContext, payload: dict[str, object]) -> None:
    """Fails after one step, with a clear error."""
    await ctx.step.run("load_customer", _pause, 0.01, {"id": "c-1"})
    raise ValueError("the card was declined (test)")


@workflow(id="long_sleep")
async def long_sleep(ctx: WorkflowContext, payload: dict[str, object]) -> None:
    """Sleeps an hour (cancelled by the tests)."""
    await ctx.step.run("prepare", _pause, 0.01, None)
    await ctx.step.sleep("nap", timedelta(hours=1))


@tool
async def lookup_order(order_id: str) -> dict[str, str]:
    """Look an order up by id."""
    return {"order_id": order_id, "status": "shipped", "carrier": "UPS", "eta": "tomorrow"}


def no_secrets(context: GuardrailContext) -> GuardrailResult:
    """An output guardrail: refuses answers that leak an API key."""
    if "sk-" in context.text:
        return GuardrailResult(passed=False, reason="the answer contains an API key")
    return GuardrailResult(passed=True, reason="no secret in the answer")


support_agent: Agent[Any] = Agent(
    id="support_agent",
    provider="openai",
    provider_base_url=os.environ.get("FAKE_LLM_URL", "http://127.0.0.1:9/v1"),
    model="gpt-4o-mini",
    system_prompt="You answer questions about orders. Use the tools.",
    tools=[lookup_order],
    guardrails=[no_secrets],
)


if __name__ == "__main__":
    os.environ.setdefault("OPENAI_API_KEY", "test-key")
    worker = Worker(
        client=PolosClient(),
        workflows=[
            price_quote,
            order_pipeline,
            many_steps,
            refund_request,
            always_fails,
            long_sleep,
        ],
        agents=[support_agent],
    )
    asyncio.run(worker.run())
