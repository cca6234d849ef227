"""Deterministic stand-in for the model, used when no OPENAI_API_KEY is set.

It behaves like a careful model would: first it calls both tools for the order's items,
then it answers with the structured ``OrderValidation`` built from the tools' results.
"""

import ast
import json
import re

from polos.testing import FakeReply, FakeRequest


def _items(text: str) -> list[str]:
    """The items of ``Validate this order: id='o-1' amount=5000.0 items=['gpu']``."""
    found = re.search(r"items=(\[.*?\])", text)
    return list(ast.literal_eval(found.group(1))) if found else []


def answer(request: FakeRequest) -> FakeReply | str:
    order = next((text for role, text in request.messages if role == "user"), "")
    items = _items(order)
    results = [text for role, text in request.messages if role == "tool"]

    if not results:  # turn 1: look things up (both calls in one answer, run at once)
        return FakeReply(
            tool_calls=[
                ("check_inventory", {"items": items}),
                ("calculate_shipping", {"items": items, "country": "US"}),
            ]
        )

    # turn 2: decide, from what the tools said
    stock = json.loads(results[0])
    missing = [item for item, in_stock in stock.items() if not in_stock]
    if missing:
        verdict = {"valid": False, "reason": f"out of stock: {', '.join(missing)}"}
    else:
        verdict = {
            "valid": True,
            "reason": f"all {len(items)} item(s) in stock; shipping costs ${results[1]}",
        }
    return json.dumps(verdict)
