"""Watch a reasoning model think (live), then read its recorded reasoning and answer."""

import asyncio

from agent import thinking_agent

from polos import PolosClient

PUZZLE = (
    "A bat and a ball cost $1.10 in total. The bat costs $1.00 more than the ball. "
    "How much does the ball cost?"
)


async def main() -> None:
    async with PolosClient() as client:
        print(f"> {PUZZLE}")
        stream = await thinking_agent.stream(client, PUZZLE)
        labels = {"reasoning_delta": "thinking", "text_delta": "answer"}
        section = None
        # Iterating the stream itself gives every live event: reasoning and text deltas,
        # tool calls, tool results, and "finish".
        async for event in stream:
            if event.type in labels:
                if event.type != section:
                    section = event.type
                    print(f"\n[{labels[section]}] ", end="")
                print(event.text, end="", flush=True)
        print("\n")
        result = await stream.result(timeout=120)

    # The reasoning is recorded with each model call (its llm:N step), not only streamed:
    # a replay after a crash sends it back to the model as it was.
    reasoning = "\n".join(step.reasoning for step in result.steps if step.reasoning)
    print(f"recorded: {len(reasoning)} characters of reasoning summary")
    print(f"recorded answer: {result.result}")
    print(
        f"tokens: {result.usage.input_tokens} in, {result.usage.output_tokens} out, "
        f"of which {result.usage.reasoning_tokens} reasoning"
    )
    if "0.05" not in result.text and "5 cents" not in result.text:
        raise SystemExit("expected the answer $0.05")
    if not reasoning:
        # Some accounts get no reasoning summaries (OpenAI asks for a verified
        # organization); the model still reasoned, as the reasoning tokens show.
        print("note: the provider returned no reasoning summary for this call")


if __name__ == "__main__":
    asyncio.run(main())
