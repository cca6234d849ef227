"""A stand-in for the model when no OPENAI_API_KEY is set.

It answers like a reasoning model: a reasoning summary (sent as the Responses API's
``reasoning`` item, streamed as reasoning deltas), then the answer.
"""

from polos.testing import FakeReply, FakeRequest

REASONING = (
    "Let the ball cost x dollars. The bat costs one dollar more, so x + 1.00. "
    "Together: x + (x + 1.00) = 1.10, so 2x = 0.10 and x = 0.05. "
    "Check: the bat is 1.05, and 1.05 + 0.05 = 1.10. The intuitive 10 cents is wrong: "
    "the bat would then cost 1.10 and the total 1.20."
)


def answer(request: FakeRequest) -> FakeReply:
    asked = request.body.get("reasoning") or {}
    # Only send a summary when the agent asked for one, as the real API does.
    reasoning = REASONING if asked.get("summary") else None
    return FakeReply(
        text="The ball costs $0.05 (5 cents), and the bat costs $1.05.",
        reasoning=reasoning,
        reasoning_tokens=64,
    )
