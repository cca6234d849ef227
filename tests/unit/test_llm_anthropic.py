"""The Anthropic adapter, through the real ``anthropic`` client over HTTP against
``FakeLLMServer`` (Messages API, ``POST /v1/messages``)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from polos.errors import ConfigurationError
from polos.llm import LLMRequest, Message, StreamEvent, ToolCall, ToolSpec, Usage, create_provider
from polos.testing import FakeLLMServer, FakeReply

ADD = ToolSpec(
    name="add",
    description="Add two numbers.",
    parameters={
        "type": "object",
        "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
        "required": ["a", "b"],
    },
)

_CREDENTIAL_ENV = [
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_AUTH_TOKEN",
    "ANTHROPIC_BASE_URL",
    "ANTHROPIC_PROFILE",
    "ANTHROPIC_IDENTITY_TOKEN",
    "ANTHROPIC_IDENTITY_TOKEN_FILE",
    "ANTHROPIC_FEDERATION_RULE_ID",
    "ANTHROPIC_ORGANIZATION_ID",
]


@pytest.fixture(scope="module")
def shared_server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as server:
        yield server


@pytest.fixture
def server(shared_server: FakeLLMServer) -> FakeLLMServer:
    shared_server.reset()
    return shared_server


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in _CREDENTIAL_ENV:
        monkeypatch.delenv(name, raising=False)
    # The client also looks for credential profiles on disk: point it at an empty dir.
    monkeypatch.setenv("ANTHROPIC_CONFIG_DIR", str(tmp_path))


@pytest.fixture
async def claude(server: FakeLLMServer) -> AsyncIterator[Any]:
    llm = create_provider(
        "anthropic", base_url=server.anthropic_url, api_key="sk-test", retry_base_delay=0.01
    )
    yield llm
    await llm.aclose()  # type: ignore[attr-defined]


def _ask(text: str = "hi", **fields: Any) -> LLMRequest:
    return LLMRequest(model="claude-test", messages=[Message(role="user", content=text)], **fields)


def _body(server: FakeLLMServer, index: int = 0) -> dict[str, Any]:
    return server.requests[index].body


async def _collect(stream: AsyncIterator[StreamEvent]) -> list[StreamEvent]:
    return [event async for event in stream]


async def test_anthropic__generate_text(claude: Any, server: FakeLLMServer):
    server.script([FakeReply("Hello there.", usage=(12, 3))])
    response = await claude.generate(_ask())
    assert response.text == "Hello there." and response.tool_calls == []
    assert response.finish_reason == "stop"
    assert response.model == "claude-test" and response.response_id.startswith("msg_")
    assert response.usage.input_tokens == 12 and response.usage.output_tokens == 3
    body = _body(server)
    assert body["messages"] == [{"role": "user", "content": "hi"}]
    assert body["max_tokens"] == 4096  # required by the API: a default is always sent
    assert server.requests[0].api == "anthropic"


async def test_anthropic__stream_yields_ordered_deltas_then_done(
    claude: Any, server: FakeLLMServer
):
    server.script([FakeReply("one two three four")])
    events = await _collect(claude.stream(_ask()))
    deltas = [e.text for e in events if e.type == "text_delta"]
    assert len(deltas) > 1 and "".join(deltas) == "one two three four"
    assert events[-1].type == "done" and [e.type for e in events].count("done") == 1
    assert events[-1].response is not None and events[-1].response.text == "one two three four"
    assert _body(server)["stream"] is True


async def test_anthropic__system_prompt_is_top_level(claude: Any, server: FakeLLMServer):
    server.script(["ok"])
    messages = [
        Message(role="system", content="Answer in French."),
        Message(role="user", content="hi"),
    ]
    await claude.generate(LLMRequest(model="m", system="Be brief.", messages=messages))
    body = _body(server)
    assert body["system"] == "Be brief.\n\nAnswer in French."
    assert body["messages"] == [{"role": "user", "content": "hi"}]


async def test_anthropic__temperature_max_tokens_and_thinking(claude: Any, server: FakeLLMServer):
    server.script(["a", "b"])
    await claude.generate(_ask(temperature=0.3, max_output_tokens=256))
    thinking = {"type": "enabled", "budget_tokens": 8000}
    await claude.generate(_ask(extra={"thinking": thinking, "top_k": 5}))
    first, second = _body(server, 0), _body(server, 1)
    assert first["temperature"] == 0.3 and first["max_tokens"] == 256
    assert second["thinking"] == thinking and second["top_k"] == 5
    # Thinking counts against max_tokens, which must exceed the budget.
    assert second["max_tokens"] > 8000


@pytest.mark.parametrize("stream", [False, True])
async def test_anthropic__tool_calls(claude: Any, server: FakeLLMServer, stream: bool):
    fixed = ToolCall(id="toolu_fixed", name="add", arguments={"a": 5, "b": 6})
    server.script([FakeReply("Adding.", tool_calls=[("add", {"a": 1, "b": 2}), fixed])])
    if stream:
        events = await _collect(claude.stream(_ask(tools=[ADD])))
        response = events[-1].response
        assert response is not None
        assert [e.tool_call for e in events if e.type == "tool_call"] == response.tool_calls
    else:
        response = await claude.generate(_ask(tools=[ADD]))
    assert [(c.name, c.arguments) for c in response.tool_calls] == [
        ("add", {"a": 1, "b": 2}),
        ("add", {"a": 5, "b": 6}),
    ]
    assert response.tool_calls[0].id.startswith("toolu_")
    assert response.tool_calls[1].id == "toolu_fixed"
    assert response.text == "Adding." and response.finish_reason == "tool_calls"
    assert _body(server)["tools"] == [
        {"name": "add", "description": "Add two numbers.", "input_schema": ADD.parameters}
    ]


async def test_anthropic__tool_use_and_results_in_conversation(claude: Any, server: FakeLLMServer):
    server.script(["3 and 7"])
    conversation = [
        Message(role="user", content="1+2 and 3+4?"),
        Message(
            role="assistant",
            content="Let me add.",
            tool_calls=[
                ToolCall(id="toolu_a", name="add", arguments={"a": 1, "b": 2}),
                ToolCall(id="toolu_b", name="add", arguments={"a": 3, "b": 4}),
            ],
        ),
        Message(role="tool", tool_call_id="toolu_a", name="add", content="3"),
        Message(role="tool", tool_call_id="toolu_b", name="add", content="7"),
        Message(role="user", content="thanks"),
    ]
    await claude.generate(LLMRequest(model="m", messages=conversation, tools=[ADD]))
    messages = _body(server)["messages"]
    assert messages[1] == {
        "role": "assistant",
        "content": [
            {"type": "text", "text": "Let me add."},
            {"type": "tool_use", "id": "toolu_a", "name": "add", "input": {"a": 1, "b": 2}},
            {"type": "tool_use", "id": "toolu_b", "name": "add", "input": {"a": 3, "b": 4}},
        ],
    }
    # All results of a turn (and the text after them) travel in one user turn.
    assert messages[2] == {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "toolu_a", "content": "3"},
            {"type": "tool_result", "tool_use_id": "toolu_b", "content": "7"},
            {"type": "text", "text": "thanks"},
        ],
    }
    assert len(messages) == 3
    assert server.requests[0].tool_results == 2


async def test_anthropic__structured_output_uses_output_config(claude: Any, server: FakeLLMServer):
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "integer"}},
        "required": ["answer"],
    }
    server.script(['{"answer": 3}'])
    response = await claude.generate(_ask(output_schema=schema))
    assert json.loads(response.text) == {"answer": 3}
    output_format = _body(server)["output_config"]["format"]
    assert output_format["type"] == "json_schema"
    # Adapted by anthropic.transform_schema: objects are closed.
    assert output_format["schema"]["additionalProperties"] is False
    assert output_format["schema"]["properties"] == {"answer": {"type": "integer"}}
    assert output_format["schema"]["required"] == ["answer"]


@pytest.mark.parametrize("stream", [False, True])
async def test_anthropic__thinking_is_captured_and_sent_back(
    claude: Any, server: FakeLLMServer, stream: bool
):
    server.script(
        [
            FakeReply(
                reasoning="I should add.",
                reasoning_signature="sig-abc",
                tool_calls=[("add", {"a": 1, "b": 2})],
            ),
            "3",
        ]
    )
    if stream:
        events = await _collect(claude.stream(_ask(tools=[ADD])))
        first = events[-1].response
        assert first is not None
        assert "".join(e.text for e in events if e.type == "reasoning_delta") == "I should add."
    else:
        first = await claude.generate(_ask(tools=[ADD]))
    assert first.reasoning == "I should add." and first.reasoning_signature == "sig-abc"
    conversation = [
        Message(role="user", content="hi"),
        first.as_message(),
        Message(role="tool", tool_call_id=first.tool_calls[0].id, content="3"),
    ]
    await claude.generate(LLMRequest(model="m", messages=conversation, tools=[ADD]))
    assistant = _body(server, 1)["messages"][1]
    assert assistant["content"][0] == {
        "type": "thinking",
        "thinking": "I should add.",
        "signature": "sig-abc",
    }
    assert assistant["content"][1]["type"] == "tool_use"


async def test_anthropic__several_thinking_blocks_go_back_unmodified(
    claude: Any, server: FakeLLMServer
):
    blocks = [
        {"type": "thinking", "thinking": "first", "signature": "s1"},
        {"type": "redacted_thinking", "data": "opaque"},
    ]
    server.script(["ok", "ok"])
    kept = Message(
        role="assistant",
        content="hm",
        reasoning="first",
        reasoning_signature="anthropic-blocks:" + json.dumps(blocks),
    )
    foreign = Message(
        role="assistant", content="hm", reasoning="x", reasoning_signature="openai-reasoning:{}"
    )
    for message in (kept, foreign):
        await claude.generate(
            LLMRequest(model="m", messages=[Message(role="user", content="q"), message])
        )
    assert _body(server, 0)["messages"][1]["content"] == [*blocks, {"type": "text", "text": "hm"}]
    # Another provider's reasoning token cannot be verified by Anthropic: not sent.
    assert _body(server, 1)["messages"][1]["content"] == "hm"


@pytest.mark.parametrize("stream", [False, True])
async def test_anthropic__usage_mapping(claude: Any, server: FakeLLMServer, stream: bool):
    reply = FakeReply(
        "x", usage=(100, 20), cached_tokens=40, cache_creation_tokens=10, reasoning_tokens=5
    )
    server.script([reply])
    if stream:
        response = (await _collect(claude.stream(_ask())))[-1].response
        assert response is not None
    else:
        response = await claude.generate(_ask())
    # input_tokens counts every prompt token (Anthropic's uncached count is 50 here).
    assert response.usage == Usage(
        input_tokens=100,
        output_tokens=20,
        cache_read_tokens=40,
        cache_creation_tokens=10,
        reasoning_tokens=5,
    )


async def test_anthropic__max_tokens_finish_reason_is_length(claude: Any, server: FakeLLMServer):
    server.script([FakeReply("trunc", finish_reason="max_tokens")])
    response = await claude.generate(_ask())
    assert response.finish_reason == "length"


async def test_create_provider__anthropic_reads_env(
    server: FakeLLMServer, monkeypatch: pytest.MonkeyPatch, clean_env: None
):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "env-key")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.anthropic_url)
    llm = create_provider("anthropic")
    server.script(["ok"])
    assert (await llm.generate(_ask())).text == "ok"
    await llm.aclose()  # type: ignore[attr-defined]
    assert "env-key" in server.requests[0].headers["authorization"]


async def test_create_provider__anthropic_explicit_base_url_wins(
    server: FakeLLMServer, monkeypatch: pytest.MonkeyPatch, clean_env: None
):
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:9")
    llm = create_provider("anthropic", base_url=server.anthropic_url, api_key="k")
    server.script(["ok"])
    assert (await llm.generate(_ask())).text == "ok"
    await llm.aclose()  # type: ignore[attr-defined]


def test_create_provider__anthropic_without_key(
    clean_env: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    # With ANTHROPIC_CONFIG_DIR set, the client itself fails (no profile file there)...
    with pytest.raises(ConfigurationError, match="ANTHROPIC_API_KEY"):
        create_provider("anthropic")
    # ... without it, it builds a client with no credential, which we refuse at once.
    monkeypatch.delenv("ANTHROPIC_CONFIG_DIR")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    with pytest.raises(ConfigurationError, match="ANTHROPIC_API_KEY"):
        create_provider("anthropic")
    with pytest.raises(ConfigurationError, match="messages"):
        create_provider("anthropic", model_api="responses", api_key="k")
