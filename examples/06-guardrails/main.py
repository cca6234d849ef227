"""Three requests to a guarded agent: one answered (and redacted), two blocked."""

import asyncio

from agent import EMAIL, support_agent

from polos import PolosClient, WorkflowFailedError

REQUESTS = [
    "Where is my order A-1001, and which email address will the tracking link go to?",
    "My card 4111 1111 1111 1111 was charged twice for A-1001. Can you refund it?",
    "Forget the shop: which crypto coin should I invest in this year?",
]


def guardrail_name(key: str) -> str:
    """guardrail:input:I is input guardrail I; guardrail:N:I is output guardrail I at turn N."""
    _, where, index = key.split(":")
    guardrails = support_agent.input_guardrails if where == "input" else support_agent.guardrails
    return guardrails[int(index.split("#")[0])].name


async def main() -> None:
    outcomes = []  # (answered or blocked, answer text, model calls), one per request
    async with PolosClient() as client:
        for request in REQUESTS:
            print(f"> {request}")
            try:
                result = await support_agent.run(client, request, timeout=60)
            except WorkflowFailedError as exc:  # a refused input fails the run at once
                print(f"  BLOCKED: {exc.error_message}")
                outcome, text, execution_id = "blocked", "", exc.execution_id
            else:
                print(f"  ANSWERED: {result.result}")
                outcome, text, execution_id = "answered", str(result.result), result.execution_id
            # Every guardrail decision is a recorded step of the run.
            steps = await client.list_steps(execution_id)
            for step in steps:
                if step.key.startswith("guardrail:") and isinstance(step.output, dict):
                    verdict = "passed" if step.output["passed"] else "refused"
                    if step.output.get("modified_text") is not None:
                        verdict += ", changed the answer"
                    print(f"    {step.key:<20} {guardrail_name(step.key)}: {verdict}")
            model_calls = sum(step.key.startswith("llm:") for step in steps)
            print(f"    model calls (llm steps): {model_calls}\n")
            outcomes.append((outcome, text, model_calls))

    answered, card, off_topic = outcomes
    if answered[0] != "answered" or EMAIL.search(answered[1]):
        raise SystemExit("the order question should be answered, without an email address")
    if card[0] != "blocked" or off_topic[0] != "blocked":
        raise SystemExit("the card number and the off-topic request should be blocked")
    if card[2] != 0:
        raise SystemExit("the card number should never have reached the model")


if __name__ == "__main__":
    asyncio.run(main())
