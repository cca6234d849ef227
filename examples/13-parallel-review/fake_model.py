"""A stand-in for the model when no OPENAI_API_KEY is set: deterministic, plausible reviews.

Each reviewer first asks for its team guidelines (a tool call), then answers with a `Review`
as JSON, judging the diff with a few simple rules of its area.
"""

import json
import re

from polos.testing import FakeReply, FakeRequest

AREAS = ("security", "performance", "style")


def review(area: str, diff: str) -> dict:
    added = [line[1:] for line in diff.splitlines() if line.startswith("+")]
    issues: list[str] = []
    if area == "security":
        if any("eval(" in line for line in added):
            issues.append("eval() on request data allows arbitrary code execution")
        if any(re.search(r"execute\(f[\"']", line) for line in added):
            issues.append("SQL built with an f-string: use query parameters")
    elif area == "performance":
        if any(".query(" in line or "execute(" in line for line in added) and any(
            line.strip().startswith("for ") for line in added
        ):
            issues.append("a query inside a loop: fetch the rows in one query")
    else:
        issues += [
            f"line longer than 100 characters: {line[:30]}..." for line in added if len(line) > 100
        ]
        if any(re.search(r"\bdef \w+\(.*\):", line) for line in added) and '"""' not in diff:
            issues.append("new function without a docstring")
    blocking = area != "style" and bool(issues)  # style nits alone do not block a change
    summary = (
        f"{len(issues)} {area} issue(s) found" if issues else f"no {area} problems in this change"
    )
    return {"approve": not blocking, "summary": summary, "issues": issues}


def answer(request: FakeRequest) -> FakeReply | str:
    system = request.messages[0][1].lower() if request.messages else ""
    area = next((a for a in AREAS if a in system), "style")
    if request.tool_results == 0 and request.body.get("tools"):
        return FakeReply(tool_calls=[("team_guidelines", {"area": area})])
    diff = next((text for role, text in request.messages if role == "user"), "")
    return json.dumps(review(area, diff))
