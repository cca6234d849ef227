"""Run the currency agent and print what its lifecycle hooks saw, in order."""

import asyncio
import json
import textwrap

from agent import currency_agent, hook_log_path

from polos import PolosClient

QUESTION = "How much are   250 euros in US dollars and in Japanese yen?"


async def main() -> None:
    async with PolosClient() as client:
        print(f"> {QUESTION!r}")
        result = await currency_agent.run(client, QUESTION, timeout=60)
        steps = await client.list_steps(result.execution_id)
    # on_start tidied the input: this is what the model was sent.
    print(f"the model got: {result.messages[0].content!r}\n")
    print(f"{result.result}\n")

    # The hooks ran in the worker and wrote their log there; this run's lines:
    lines = [json.loads(line) for line in hook_log_path().read_text().splitlines()]
    entries = [e for e in lines if e["execution"] == result.execution_id]
    if not entries:
        raise SystemExit(f"no hook log lines for this run in {hook_log_path()}")
    print(f"hook log ({hook_log_path()}):")
    for entry in entries:
        offset = entry["at"] - entries[0]["at"]
        print(f"  +{offset:5.3f}s {entry['event']:<20} step {entry['step']}  {entry['detail']}")

    # Every hook call is also a step of the run, next to the model and tool calls.
    print("\nstep log:")
    print(
        textwrap.fill(
            ", ".join(step.key for step in steps), initial_indent="  ", subsequent_indent="  "
        )
    )

    events = [e["event"] for e in entries]
    if events[0] != "on_start" or events[-1] != "on_end":
        raise SystemExit(f"expected on_start first and on_end last, got {events}")
    starts, ends = events.count("on_tool_start"), events.count("on_tool_end")
    if not starts or starts != ends:
        raise SystemExit("expected tool hooks, one on_tool_end for each on_tool_start")
    if "  " in result.messages[0].content:
        raise SystemExit("the on_start hook should have tidied the input")
    if not str(result.result).endswith("(Rates are examples, not live quotes.)"):
        raise SystemExit("the on_end hook should have added a note to the answer")


if __name__ == "__main__":
    asyncio.run(main())
