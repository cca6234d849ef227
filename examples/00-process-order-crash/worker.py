"""The README's ``process_order``: an agent validates, a human approves, Stripe is charged
once, the warehouse picks up, the customer is told.

``main.py`` starts this worker twice (killing the first with ``kill -9`` in between);
you can also run it yourself with ``python worker.py`` or ``polos dev worker.py``.
"""

import asyncio
import hashlib
import os
import tempfile
from pathlib import Path

from fake_model import answer
from pydantic import BaseModel

from polos import Agent, PolosClient, Worker, WorkflowContext, current_step, tool, workflow
from polos.testing import fake_llm_unless_key

# Without OPENAI_API_KEY the agent talks to a local fake model server (see fake_model.py).
fake_llm_unless_key(answer)

# What "really happened" (charges, e-mails) is appended here: the ground truth main.py reads.
LEDGER = Path(os.environ.get("POLOS_EXAMPLE_TMP") or tempfile.gettempdir()) / "ledger.log"


def record(line: str) -> None:
    with LEDGER.open("a", encoding="utf-8") as f:
        f.write(f"{line} pid={os.getpid()}\n")


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
    amount: float


# ---------------------------------------------------------------- tools and side effects

STOCK = {"keyboard": 12, "monitor": 3, "gpu": 1}


@tool
def check_inventory(items: list[str]) -> dict[str, bool]:
    """Whether each item is in stock."""
    return {item: STOCK.get(item, 0) > 0 for item in items}


@tool
def calculate_shipping(items: list[str], country: str = "US") -> float:
    """Shipping cost in USD of the items to a country (ISO code)."""
    return 9.5 + 4.0 * len(items) if country == "US" else 25.0 + 6.0 * len(items)


def charge_stripe(order: ProcessOrderInput) -> Payment:
    # The step's idempotency key is the same on every retry and replay: a real integration
    # passes it to Stripe (Idempotency-Key header) so a retried call cannot charge twice.
    key = current_step().idempotency_key
    payment = Payment(
        id=f"pay_{hashlib.sha256(key.encode()).hexdigest()[:12]}", amount=order.amount
    )
    record(f"charge {order.id} {payment.id} {order.amount:.2f}")
    return payment


def send_shipping_email(order: ProcessOrderInput) -> None:
    record(f"email {order.id} shipped")


# ---------------------------------------------------------------- the agent and the workflow


class OrderValidation(BaseModel):
    valid: bool
    reason: str


order_agent = Agent(
    id="order_agent",
    provider="openai",
    model="gpt-4o",
    system_prompt=(
        "You validate customer orders. Check that every item is in stock and compute the "
        "shipping cost. The order is valid only if every item is in stock."
    ),
    tools=[check_inventory, calculate_shipping],
    output_schema=OrderValidation,
)


@workflow(trigger_on_event="order/new")
async def process_order(ctx: WorkflowContext, order: ProcessOrderInput) -> ProcessOrderOutput:
    # Agent validates order and checks inventory
    validation = await ctx.step.agent_invoke_and_wait(
        "validate_order", order_agent.with_input(f"Validate this order: {order}")
    )

    if not validation.result.valid:
        return ProcessOrderOutput(status="invalid", reason=validation.result.reason)

    # High-value orders need approval - suspend until a human decides
    if order.amount > 1000:
        decision = await ctx.step.suspend(
            "approval", data={"id": order.id, "amount": order.amount, "items": order.items}
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


client = PolosClient()
worker = Worker(client=client, workflows=[process_order], agents=[order_agent])

if __name__ == "__main__":
    asyncio.run(worker.run())
