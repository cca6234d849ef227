"""The seed README's headline example as written (its agent, its workflow), plus a router.

The example's undefined names (tools, models, ``charge_stripe``...) are defined here; the
``Agent(...)`` and ``@workflow`` blocks are the README's, unchanged. The agents reach the
test's fake model through ``OPENAI_BASE_URL`` (no ``provider_base_url`` in the example).

Environment:
    POLOS_API_URL: the orchestrator.
    OPENAI_BASE_URL / OPENAI_API_KEY: the fake server (``.../v1``) and any key.
    SIDE_LOG: file that side-effect functions append ``<what> <execution id> <pid>`` to.
"""

from __future__ import annotations

import asyncio
import os
from typing import Literal

from pydantic import BaseModel

from polos import Agent, PolosClient, Worker, WorkflowContext, current_step, tool, workflow


def side_log(what: str) -> None:
    path = os.environ.get("SIDE_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(f"{what} {current_step().execution_id} {os.getpid()}\n")


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


@tool
def check_inventory(items: list[str]) -> dict[str, bool]:
    """Whether each item is in stock."""
    side_log("check_inventory")
    return {item: item != "unicorn" for item in items}


@tool
def calculate_shipping(items: list[str], country: str = "FR") -> float:
    """Shipping cost of the items to a country."""
    return 4.5 * len(items)


async def charge_stripe(order: ProcessOrderInput) -> Payment:
    side_log("charge")
    return Payment(id=f"pay_{order.id}")


async def send_shipping_email(order: ProcessOrderInput) -> None:
    side_log("notify")


# ---------------------------------------------------------------- the README's code, as written
# fmt: off

order_agent = Agent(
    provider="openai",
    model="gpt-4o",
    tools=[check_inventory, calculate_shipping]
)

@workflow(trigger_on_event="order/new")
async def process_order(ctx: WorkflowContext, order: ProcessOrderInput):
    # Agent validates order and checks inventory
    validation = await ctx.step.agent_invoke_and_wait(
        "validate_order",
        order_agent.with_input(f"Validate this order: {order}")
    )

    if not validation.result.valid:
        return ProcessOrderOutput(status="invalid", reason=validation.result.reason)

    # High-value orders need approval - suspend until human decides
    if order.amount > 1000:
        decision = await ctx.step.suspend(
            "approval",
            data={"id": order.id, "amount": order.amount, "items": order.items}
        )
        if not decision.data["approved"]:
            return ProcessOrderOutput(status="rejected")

    # Charge customer (exactly-once guarantee)
    payment = await ctx.step.run("charge", charge_stripe, order)

    # Wait for warehouse pickup (could be hours or days)
    await ctx.step.wait_for_event("wait_pickup", topic=f"warehouse.pickup/{order.id}")

    # Send shipping notification
    await ctx.step.run("notify", send_shipping_email, order)

    return ProcessOrderOutput(status="completed", payment_id=payment.id)
# fmt: on


# ---------------------------------------------------------------- a router over specialists


class Route(BaseModel):
    specialist: Literal["billing", "tech"]


class Question(BaseModel):
    text: str


router = Agent(
    id="router",
    provider="openai",
    model="gpt-4o-mini",
    system_prompt="Route the question: billing or tech.",
    output_schema=Route,
)
billing = Agent(id="billing", provider="openai", model="gpt-4o", system_prompt="You do billing.")
tech = Agent(id="tech", provider="openai", model="gpt-4o", system_prompt="You do tech support.")
SPECIALISTS = {"billing": billing, "tech": tech}


@workflow(id="support")
async def support(ctx: WorkflowContext, question: Question) -> dict[str, object]:
    """Route with one agent, answer with the chosen one, then have both review it at once."""
    route = await ctx.step.agent_invoke_and_wait("route", router.with_input(question.text))
    specialist = SPECIALISTS[route.result.specialist]
    answer = await ctx.step.agent_invoke_and_wait("answer", specialist.with_input(question.text))
    reviews = await ctx.step.batch_agent_invoke_and_wait(
        "review", [a.with_input(f"Review: {answer.result}") for a in SPECIALISTS.values()]
    )
    return {
        "route": route.result.specialist,
        "answer": answer.result,
        "reviews": [r.result.result for r in reviews],
        "review_agents": [r.workflow_id for r in reviews],
    }


if __name__ == "__main__":
    agents = [order_agent, router, billing, tech]
    asyncio.run(
        Worker(client=PolosClient(), agents=agents, workflows=[process_order, support]).run()
    )
