"""Optional: the adapters against the real providers. Run only when keys are present.

``POLOS_TEST_REAL_LLM=1 OPENAI_API_KEY=... ANTHROPIC_API_KEY=... python -m pytest -n 0
tests/unit/test_llm_real_providers.py`` (costs a few cents). Models can be chosen with
``POLOS_TEST_OPENAI_MODEL`` / ``POLOS_TEST_ANTHROPIC_MODEL``.
"""

from __future__ import annotations

import os

import pytest

from polos.llm import LLMRequest, Message, ToolSpec, create_provider

CASES = [
    ("openai", None, "OPENAI_API_KEY", os.environ.get("POLOS_TEST_OPENAI_MODEL", "gpt-4o-mini")),
    (
        "openai",
        "chat_completions",
        "OPENAI_API_KEY",
        os.environ.get("POLOS_TEST_OPENAI_MODEL", "gpt-4o-mini"),
    ),
    (
        "anthropic",
        None,
        "ANTHROPIC_API_KEY",
        os.environ.get("POLOS_TEST_ANTHROPIC_MODEL", "claude-3-5-haiku-latest"),
    ),
]


@pytest.mark.parametrize(("provider", "api", "key", "model"), CASES)
async def test_real_provider__answers_and_calls_a_tool(
    provider: str, api: str | None, key: str, model: str
) -> None:
    if os.environ.get("POLOS_TEST_REAL_LLM") != "1" or not os.environ.get(key):
        pytest.skip(f"set POLOS_TEST_REAL_LLM=1 and {key} to run against the real provider")
    llm = create_provider(provider, model_api=api)
    weather = ToolSpec(
        name="get_weather",
        description="Current weather of a city.",
        parameters={
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    )
    asked = await llm.generate(
        LLMRequest(
            model=model,
            messages=[Message(role="user", content="Weather in Paris? Use the tool.")],
            tools=[weather],
        )
    )
    assert asked.tool_calls and asked.tool_calls[0].name == "get_weather"
    assert asked.usage.input_tokens > 0
    call = asked.tool_calls[0]
    answered = await llm.generate(
        LLMRequest(
            model=model,
            messages=[
                Message(role="user", content="Weather in Paris? Use the tool."),
                asked.as_message(),
                Message(role="tool", tool_call_id=call.id, name=call.name, content='{"temp": 21}'),
            ],
            tools=[weather],
        )
    )
    assert "21" in answered.text
    chunks = [
        e.text
        async for e in llm.stream(
            LLMRequest(model=model, messages=[Message(role="user", content="Say hi")])
        )
        if e.type == "text_delta"
    ]
    assert "".join(chunks).strip()
