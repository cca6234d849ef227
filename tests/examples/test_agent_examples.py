"""Agent examples 01-07, run end to end offline (fake model server, fresh orchestrator).

Each test checks what the example claims: the tool calls made, the typed result, the
streamed chunks, the remembered conversation, the recorded reasoning, the guardrail
decisions and the hook calls (counted from the hooks' own log, exactly once each).
"""

from __future__ import annotations

import json
import re
from collections import Counter

from .conftest import RunExample


def test_01_agent_with_tools(run_example: RunExample) -> None:
    run = run_example("01-agent-with-tools")
    assert 'get_weather(city=\'Paris\') -> {"city": "Paris", "temperature": 18' in run.output
    assert 'get_weather(city=\'Tokyo\') -> {"city": "Tokyo", "temperature": 24' in run.output
    assert "Right now: Paris 18°C, light rain; Tokyo 24°C, sunny." in run.output
    assert "tool calls (2):" in run.output
    assert "2 model calls" in run.output
    assert "stop reason: completed" in run.output


def test_02_structured_output(run_example: RunExample) -> None:
    run = run_example("02-structured-output")
    assert "Grandma's tomato soup: serves 4, 35 min" in run.output
    assert "vegetarian: yes" in run.output
    assert "ingredients (6):" in run.output
    assert re.search(r"2 cloves\s+garlic", run.output)
    assert "3. Blend with the basil and season to taste." in run.output
    assert "Recipe validated after 1 model call(s)" in run.output


def test_03_agent_streaming(run_example: RunExample) -> None:
    run = run_example("03-agent-streaming")
    chunks = re.search(r"(\d+) chunks, the first after", run.output)
    assert chunks is not None and int(chunks[1]) > 50  # word by word, not one block
    assert "Every night for forty years, Maren climbed" in run.output
    assert "the streamed chunks add up to the final answer" in run.output
    assert "stop reason completed" in run.output


def test_04_conversational_chat(run_example: RunExample) -> None:
    run = run_example("04-conversational-chat")
    assert "agent: Nice to meet you, Ada! Lisbon is a wonderful choice." in run.output
    assert "For three spring days in Lisbon" in run.output  # turn 2 knew the city
    assert "agent: Your name is Ada and you're going to Lisbon." in run.output
    for earlier in (0, 2, 4):
        assert f"(the model saw {earlier} earlier messages)" in run.output
    assert "session 'example-04:ada': version 3, 6 messages stored" in run.output


def test_05_thinking_agent(run_example: RunExample) -> None:
    run = run_example("05-thinking-agent")
    assert "[thinking] Let the ball cost x dollars." in run.output
    assert "[answer] The ball costs $0.05" in run.output
    assert run.output.index("[thinking]") < run.output.index("[answer]")
    recorded = re.search(r"recorded: (\d+) characters of reasoning summary", run.output)
    assert recorded is not None and int(recorded[1]) > 100
    assert "of which 64 reasoning" in run.output
    assert "no reasoning summary" not in run.output


def test_06_guardrails(run_example: RunExample) -> None:
    run = run_example("06-guardrails")
    out = run.output
    assert "The tracking link goes to [email redacted]." in out
    assert "ada.lovelace@example.com" not in out
    assert "redact_emails: passed, changed the answer" in out
    assert "BLOCKED: agent 'shop_support': input refused by guardrail 'no_card_numbers'" in out
    assert "BLOCKED: agent 'shop_support': input refused by guardrail 'on_topic'" in out
    blocks = out.split("> ")[1:]
    assert len(blocks) == 3
    assert "model calls (llm steps): 2" in blocks[0]
    assert "no_card_numbers: refused" in blocks[1] and "on_topic" not in blocks[1]
    assert "model calls (llm steps): 0" in blocks[1]
    assert "on_topic: refused" in blocks[2]


def test_07_lifecycle_hooks(run_example: RunExample) -> None:
    run = run_example("07-lifecycle-hooks")
    assert "the model got: 'How much are 250 euros in US dollars and in Japanese yen?'" in (
        run.output
    )
    assert "That is 271.74 USD or 40,322.58 JPY.\n(Rates are examples, not live quotes.)" in (
        run.output
    )
    assert "fixed: {'from_currency': 'EUR', 'to_currency': 'USD'}" in run.output
    # Each hook ran exactly once per point of the run (the worker's hook log).
    entries = [json.loads(line) for line in (run.scratch / "hooks.log").read_text().splitlines()]
    assert len({e["execution"] for e in entries}) == 1
    events = [e["event"] for e in entries]
    assert events[0] == "on_start" and events[-1] == "on_end"
    assert Counter(events) == {
        "on_start": 1,
        "on_agent_step_start": 2,
        "on_tool_start": 2,
        "on_tool_end": 2,
        "on_agent_step_end": 2,
        "on_end": 1,
    }
    # Tool hooks are recorded per call (hook:on_tool_end:1:call_N:0).
    assert len(set(re.findall(r"hook:on_tool_end:1:call_\d+:0", run.output))) == 2
