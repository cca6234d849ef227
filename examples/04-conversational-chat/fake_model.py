"""A stand-in for the model when no OPENAI_API_KEY is set.

Like a real model it only knows what is in the request: the earlier turns of the
session are there (``request.messages``) because the agent loaded them from the session.
"""

from __future__ import annotations

import re

from polos.testing import FakeRequest


def answer(request: FakeRequest) -> str:
    said = [text for role, text in request.messages if role == "user"]
    latest = said[-1].lower()
    history = " ".join(said[:-1])
    name = re.search(r"my name is (\w+)", " ".join(said), re.IGNORECASE)
    city = re.search(r"trip to (\w+)", " ".join(said))
    if "my name is" in latest:
        greeting = f"Nice to meet you, {name[1]}!" if name else "Nice to meet you!"
        trip = f" {city[1]} is a wonderful choice." if city else ""
        return greeting + trip + " How can I help you plan it?"
    if "pack" in latest:
        where = f" in {city[1]}" if city else ""
        return (
            f"For three spring days{where}, pack layers: T-shirts, a light sweater, a "
            "rain jacket and comfortable shoes for the hills."
        )
    if "name" in latest or "where" in latest:
        if not history:
            return "I'm sorry, I don't know yet: you haven't told me."
        who = f"Your name is {name[1]}" if name else "You haven't told me your name"
        where = f" and you're going to {city[1]}" if city else ""
        return f"{who}{where}. Have a great trip!"
    return "Tell me more about your trip!"
