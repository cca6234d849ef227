"""A stand-in for the model when no OPENAI_API_KEY is set.

It asks for one ``convert`` call per target currency, writing the codes in lower case
as a sloppy model might (the ``on_tool_start`` hook fixes them), then answers from the
tool results.
"""

from __future__ import annotations

import json
import re

from polos.testing import FakeReply, FakeRequest

NAMES = {"dollar": "usd", "yen": "jpy", "pound": "gbp", "franc": "chf", "euro": "eur"}


def answer(request: FakeRequest) -> FakeReply | str:
    question = next(text for role, text in reversed(request.messages) if role == "user")
    results = [json.loads(out) for role, out in request.messages if role == "tool"]
    if not results and request.body.get("tools"):
        amount = float(re.search(r"\d+(?:\.\d+)?", question)[0])
        named = [code for name, code in NAMES.items() if name in question.lower()]
        source, targets = named[-1], named[:-1]  # "... 250 euros in dollars and yen"
        calls = [
            ("convert", {"amount": amount, "from_currency": source, "to_currency": target})
            for target in targets
        ]
        return FakeReply(tool_calls=calls)
    parts = [f"{r['amount']:,} {r['currency']}" for r in results if "amount" in r]
    return "That is " + " or ".join(parts) + "." if parts else "Which currencies?"
