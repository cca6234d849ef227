"""Ask the weather agent a question; print its answer and the tool calls it made."""

import asyncio
import json

from agent import weather_agent

from polos import PolosClient

QUESTION = "What's the weather like in Paris and Tokyo right now?"


async def main() -> None:
    async with PolosClient() as client:
        print(f"> {QUESTION}")
        # Runs on the worker as a durable execution; every model and tool call is a
        # recorded step (see it with `polos executions show <id>`).
        result = await weather_agent.run(client, QUESTION, timeout=60)

    print(f"\n{result.result}\n")
    print(f"tool calls ({len(result.tool_results)}):")
    for call in result.tool_results:
        arguments = ", ".join(f"{k}={v!r}" for k, v in call.arguments.items())
        print(f"  step {call.step}: {call.name}({arguments}) -> {call.output}")
    print(
        f"\n{result.total_steps} model calls, {result.usage.total_tokens} tokens, "
        f"stop reason: {result.stop_reason}, execution {result.execution_id}"
    )

    cities = {
        json.loads(call.output).get("city", "").lower()
        for call in result.tool_results
        if call.name == "get_weather" and not call.error
    }
    if not {"paris", "tokyo"} <= cities:
        raise SystemExit(f"expected get_weather calls for Paris and Tokyo, got {sorted(cities)}")


if __name__ == "__main__":
    asyncio.run(main())
