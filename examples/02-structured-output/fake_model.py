"""A stand-in for the model when no OPENAI_API_KEY is set.

It answers like a model told to fill the ``Recipe`` JSON schema the agent sends (in the
request's ``text.format``), reading the few facts it needs out of the recipe text.
"""

from __future__ import annotations

import json
import re

from polos.testing import FakeRequest

MEAT = ("chicken", "beef", "pork", "bacon", "ham", "fish", "anchovy")


def _ingredient(text: str) -> dict[str, str]:
    found = re.match(
        r"(a handful|a pinch|\d+\s*(?:kg|g|ml|l|tbsp|tsp|cloves?)?)\s+(?:of\s+)?(.+)", text
    )
    if found is None:
        return {"item": text, "quantity": ""}
    return {"item": found[2], "quantity": found[1]}


def answer(request: FakeRequest) -> str:
    text = next(text for role, text in reversed(request.messages) if role == "user")
    schema = (request.body.get("text") or {}).get("format", {})
    if schema.get("type") != "json_schema":  # not asked for JSON: a plain answer
        return "Send me a recipe and I will extract it."
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    title = re.split(r"\s+[-—]\s+", lines[0])[0]
    needs = re.search(r"You need (.+?)\.", text)
    items = re.split(r",\s*|\s+and\s+", needs[1]) if needs else []
    method = lines[-1]
    recipe = {
        "title": title,
        "servings": int(re.search(r"serves (\d+)", text)[1]),
        "total_minutes": int(re.search(r"(\d+) minutes", text)[1]),
        "vegetarian": not any(word in text.lower() for word in MEAT),
        "ingredients": [_ingredient(item) for item in items],
        "steps": [s.strip() + "." for s in method.split(".") if s.strip()],
    }
    return json.dumps(recipe)
