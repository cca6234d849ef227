"""Deterministic stand-in for the model, used when no OPENAI_API_KEY is set.

It answers like a reasonable model would for this example: the router classifies by
keywords, each specialist first calls its tool, then answers from the tool's output.
"""

import json

from polos.testing import FakeReply, FakeRequest

BILLING_WORDS = ("charge", "charged", "invoice", "refund", "bill", "payment", "plan", "price")


def _tool_names(request: FakeRequest) -> set[str]:
    names = set()
    for spec in request.body.get("tools") or []:
        names.add(spec.get("name") or spec.get("function", {}).get("name"))
    return names


def _wants_json(request: FakeRequest) -> bool:
    body = request.body
    return bool(
        body.get("text", {}).get("format")
        or body.get("response_format")
        or body.get("output_config")
    )


def _last_user_text(request: FakeRequest) -> str:
    return next((text for role, text in reversed(request.messages) if role == "user"), "")


def answer(request: FakeRequest) -> FakeReply | str:
    question = _last_user_text(request)
    tools = _tool_names(request)

    if _wants_json(request):  # the router: structured output, a Route
        words = question.lower()
        if any(word in words for word in BILLING_WORDS):
            route = {"specialist": "billing", "reason": "The customer asks about a charge."}
        else:
            route = {"specialist": "tech", "reason": "The customer reports a product problem."}
        return json.dumps(route)

    customer = next(
        (line.split(":", 1)[1].strip() for line in question.splitlines() if "Customer id" in line),
        "unknown",
    )
    tool_outputs = [text for role, text in request.messages if role == "tool"]

    if "lookup_invoices" in tools:  # the billing specialist
        if not tool_outputs:
            return FakeReply(tool_calls=[("lookup_invoices", {"customer_id": customer})])
        invoices = json.loads(tool_outputs[-1])
        months: dict[str, list[str]] = {}
        for invoice in invoices:
            months.setdefault(invoice["month"], []).append(invoice["id"])
        twice = {month: ids for month, ids in months.items() if len(ids) > 1}
        if twice:
            month, ids = next(iter(twice.items()))
            return (
                f"You were charged twice for {month} ({', '.join(ids)}). "
                f"I have requested a refund of {ids[-1]}; it reaches your card in 5-7 days."
            )
        return "Your invoices look correct: one charge per month."

    if "check_status" in tools:  # the tech specialist
        if not tool_outputs:
            component = "uploads" if "upload" in question.lower() else "api"
            return FakeReply(tool_calls=[("check_status", {"component": component})])
        status = json.loads(tool_outputs[-1])
        if status["status"] != "operational":
            return (
                f"This is a known incident ({status['incident']}). "
                "Until the fix is out, upload files under 10 MB or retry in about an hour."
            )
        return f"{status['component']} is operational; please send us the error message you see."

    return "How can I help?"
