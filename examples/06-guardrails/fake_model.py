"""A stand-in for the model when no OPENAI_API_KEY is set.

It plays two parts, as the real model does: the support agent (calls ``lookup_order``,
then answers from its result) and the judge of the string guardrail (asked for JSON
``{"passed", "reason"}`` with the response format named ``guardrail_decision``).
"""

from __future__ import annotations

import json
import re

from polos.testing import FakeReply, FakeRequest

OFF_TOPIC = ("invest", "crypto", "bitcoin", "stock market")


def answer(request: FakeRequest) -> FakeReply | str:
    text = next(text for role, text in reversed(request.messages) if role == "user")
    response_format = (request.body.get("text") or {}).get("format") or {}
    if response_format.get("name") == "guardrail_decision":
        checked = text.split("Text:", 1)[-1].lower()
        off = next((word for word in OFF_TOPIC if word in checked), None)
        reason = "asks for investment advice, which is off topic" if off else "about the shop"
        return json.dumps({"passed": off is None, "reason": reason})

    results = [json.loads(out) for role, out in request.messages if role == "tool"]
    order_id = re.search(r"\b[A-Z]-\d{4}\b", text)
    if not results and order_id and request.body.get("tools"):
        return FakeReply(tool_calls=[("lookup_order", {"order_id": order_id[0]})])
    if results and "status" in results[-1]:
        order = results[-1]
        return (
            f"Order {order['order_id']} has {order['status']} with {order['carrier']} and "
            f"should arrive on {order['arrives']}. The tracking link goes to "
            f"{order['customer_email']}."
        )
    return "I can help with orders, delivery and returns. What is your order number?"
