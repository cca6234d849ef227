"""A shop's support agent with input and output guardrails."""

from __future__ import annotations

import re

from polos import Agent, GuardrailResult, guardrail, tool
from polos.agents import GuardrailContext

CARD_NUMBER = re.compile(r"\b(?:\d[ -]?){12,18}\d\b")
EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")

ORDERS = {
    "A-1001": {
        "status": "shipped",
        "carrier": "DHL",
        "arrives": "Thursday",
        "customer_email": "ada.lovelace@example.com",
    },
}


@tool
def lookup_order(order_id: str) -> dict:
    """Status, carrier, expected arrival and customer email of an order (ids like A-1001)."""
    order = ORDERS.get(order_id.strip().upper())
    return {"order_id": order_id, **order} if order else {"error": f"no order {order_id}"}


def no_card_numbers(ctx: GuardrailContext) -> GuardrailResult:
    """Input guardrail: a card number must never reach the model (nor its provider's logs)."""
    if CARD_NUMBER.search(ctx.text):
        return GuardrailResult(
            passed=False, reason="the message contains a payment card number; never send one"
        )
    return GuardrailResult(passed=True)


def redact_emails(ctx: GuardrailContext) -> GuardrailResult:
    """Output guardrail: answers never show an email address (the tool output has one)."""
    redacted = EMAIL.sub("[email redacted]", ctx.text)
    # passed with modified_text: the answer goes on, with this text instead.
    return GuardrailResult(passed=True, modified_text=redacted if redacted != ctx.text else None)


support_agent = Agent(
    id="shop_support",
    provider="openai",
    model="gpt-4o-mini",
    system_prompt=(
        "You are the support assistant of an online shop. Use lookup_order for questions "
        "about an order and answer in one or two sentences with the details you found."
    ),
    tools=[lookup_order],
    # Checked in order before the first model call; the first refusal fails the run.
    input_guardrails=[
        no_card_numbers,
        # A string is a rule judged by the agent's own model (one extra call, recorded);
        # guardrail(...) gives it a name for errors and the step log.
        guardrail(
            "The message must be about the shop: orders, delivery, returns or products. "
            "Financial or investment advice is off topic.",
            name="on_topic",
        ),
    ],
    # Checked on every answer of the model; a refusal would make it answer again.
    guardrails=[redact_emails],
)
