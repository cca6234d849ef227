"""Workflow basics: steps, typed input and output, a child workflow, deterministic values, a
durable sleep.

Run it with `python worker.py` (or `polos worker worker.py`), then `python main.py`.
"""

import asyncio
import os
import tempfile
from datetime import timedelta
from pathlib import Path

from pydantic import BaseModel

from polos import PolosClient, Worker, WorkflowContext, current_step, workflow

# Side effects are appended to this file, so that main.py can show that each ran once.
LEDGER = Path(os.environ.get("POLOS_EXAMPLE_TMP") or tempfile.gettempdir()) / "08-ledger.txt"

PRICES = {"keyboard": 49.0, "mouse": 19.0, "monitor": 189.0, "cable": 9.0}


# ---------------------------------------------------------------- typed input and output


class Order(BaseModel):
    customer: str
    items: list[str]
    country: str = "FR"


class ShippingRequest(BaseModel):
    items: int
    country: str


class ShippingQuote(BaseModel):
    carrier: str
    cost: float
    days: int


class Receipt(BaseModel):
    order_ref: str
    placed_at: str
    subtotal: float
    shipping: ShippingQuote
    discount: float
    total: float
    payment_id: str


# ---------------------------------------------------------------- step functions
# Plain functions (sync or async). A step's result is recorded before the workflow moves on;
# a replay after a crash returns the recorded result instead of calling the function again.


def price_item(item: str) -> float:
    if item not in PRICES:
        raise ValueError(f"unknown item: {item}")
    return PRICES[item]


def charge_card(customer: str, amount: float) -> str:
    # Stable across retries, replays and crashes: hand it to the payment provider so that
    # a step re-run after a crash cannot charge twice.
    key = current_step().idempotency_key
    with LEDGER.open("a") as ledger:
        ledger.write(f"charge {key} {customer} {amount:.2f}\n")
    return f"pay_{key.split(':')[0][-8:]}"


# ---------------------------------------------------------------- a child workflow


@workflow
async def quote_shipping(ctx: WorkflowContext, req: ShippingRequest) -> ShippingQuote:
    """A workflow of its own: it has its own execution, steps and retries."""
    domestic = req.country == "FR"
    return ShippingQuote(
        carrier="La Poste" if domestic else "DHL",
        cost=(4.5 if domestic else 12.0) + 1.5 * req.items,
        days=2 if domestic else 5,
    )


# ---------------------------------------------------------------- the workflow


@workflow
async def checkout(ctx: WorkflowContext, order: Order) -> Receipt:
    """Price an order, quote shipping in a child workflow, wait a moment, charge once."""
    # Deterministic helpers: recorded the first time, the same value on every replay.
    # (uuid4(), datetime.now() or random() here would change when the workflow replays.)
    order_ref = ctx.step.uuid("order_ref")
    placed_at = ctx.step.now("placed_at")
    lucky = ctx.step.random("lucky_draw") < 0.25  # one order in four gets 10 % off

    # One step per item. A key used again gets a suffix (price, price#2, ...), so a loop
    # replays correctly as long as it makes the same calls in the same order.
    subtotal = 0.0
    for item in order.items:
        subtotal += await ctx.step.run("price", price_item, item)

    # Start a child workflow and wait for its (typed) result. While it runs, this execution
    # is parked in the orchestrator and holds no worker slot.
    shipping = await ctx.step.invoke_and_wait(
        "shipping",
        quote_shipping,
        ShippingRequest(items=len(order.items), country=order.country),
    )

    # A durable timer: the wake-up time is recorded, so a restart does not start it over.
    # (Sleeps longer than a few seconds park the execution instead of holding the worker.)
    await ctx.step.sleep("grace_period", timedelta(seconds=1))

    discount = round(subtotal * 0.1, 2) if lucky else 0.0
    total = round(subtotal - discount + shipping.cost, 2)
    payment_id = await ctx.step.run("charge", charge_card, order.customer, total)

    return Receipt(
        order_ref=order_ref,
        placed_at=placed_at.isoformat(),
        subtotal=subtotal,
        shipping=shipping,
        discount=discount,
        total=total,
        payment_id=payment_id,
    )


client = PolosClient()  # POLOS_API_URL (default http://127.0.0.1:8080), POLOS_API_KEY, ...
worker = Worker(client=client, workflows=[checkout, quote_shipping])

if __name__ == "__main__":
    asyncio.run(worker.run())
