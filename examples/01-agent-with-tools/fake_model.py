"""A stand-in for the model when no OPENAI_API_KEY is set: deterministic, plausible answers.

It does what a real model would do with this agent: first ask for ``get_weather`` once
per city named in the question, then, once the tool results are in the conversation,
answer from them.
"""

from __future__ import annotations

import json

from polos.testing import FakeReply, FakeRequest

CITIES = ["Paris", "Tokyo", "New York", "Sydney"]


def answer(request: FakeRequest) -> FakeReply | str:
    question = next(text for role, text in reversed(request.messages) if role == "user")
    results = [json.loads(text) for role, text in request.messages if role == "tool"]
    if not results and request.body.get("tools"):
        asked = [city for city in CITIES if city.lower() in question.lower()]
        if asked:
            return FakeReply(tool_calls=[("get_weather", {"city": city}) for city in asked])
        return "Which city would you like the weather for?"
    parts = [
        f"{r['city']} {r['temperature']}°{'C' if r['unit'] == 'celsius' else 'F'}, {r['conditions']}"
        for r in results
        if "temperature" in r
    ]
    return "Right now: " + "; ".join(parts) + "." if parts else "I could not find that city."
