"""The OpenAI adapters (Responses and Chat Completions, and the compatible servers),
through the real ``openai`` client over HTTP against ``FakeLLMServer``."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from polos.errors import ConfigurationError
from polos.llm import (
    LLMProvider,
    LLMRequest,
    Message,
    StreamEvent,
    ToolCall,
    ToolSpec,
    Usage,
    create_provider,
)
from polos.llm._openai_chat import is_strict_schema, parse_arguments
from polos.testing import FakeLLMServer, FakeReply

APIS = ["responses", "chat_completions"]

ADD = ToolSpec(
    name="add",
    description="Add two numbers.",
    parameters={
        "type": "object",
        "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
        "required": ["a", "b"],
        "additionalProperties": False,
    },
)
LOOSE = ToolSpec(
    name="search", parameters={"type": "object", "properties": {"q": {"type": "string"}}}
)


@pytest.fixture(scope="module")
def shared_server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as server:
        yield server


@pytest.fixture
def server(shared_server: FakeLLMServer) -> FakeLLMServer:
    shared_server.reset()
    return shared_server


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OLLAMA_HOST", "GROQ_API_KEY"):
        monkeypatch.delenv(name, raising=False)


async def _provider(server: FakeLLMServer, api: str, name: str = "openai") -> Any:
    return create_provider(
        name, model_api=api, base_url=server.url, api_key="test-key", retry_base_delay=0.01
    )


@pytest.fixture(params=APIS)
async def provider(request: pytest.FixtureRequest, server: FakeLLMServer) -> AsyncIterator[Any]:
    llm = await _provider(server, request.param)
    yield llm
    await llm.aclose()


def _ask(text: str = "hi", **fields: Any) -> LLMRequest:
    return LLMRequest(model="gpt-test", messages=[Message(role="user", content=text)], **fields)


def _body(server: FakeLLMServer, index: int = 0) -> dict[str, Any]:
    return server.requests[index].body


async def _collect(stream: AsyncIterator[StreamEvent]) -> list[StreamEvent]:
    return [event async for event in stream]


# ------------------------------------------------------------------ generate / stream


async def test_openai__generate_returns_text_and_usage(provider: Any, server: FakeLLMServer):
    server.script([FakeReply("Hello there.", usage=(12, 3))])
    response = await provider.generate(_ask())
    assert response.text == "Hello there."
    assert response.tool_calls == []
    assert response.usage.input_tokens == 12 and response.usage.output_tokens == 3
    assert response.finish_reason == "stop"
    assert response.model == "gpt-test" and response.response_id
    assert server.count() == 1


async def test_openai__stream_yields_ordered_deltas_then_done(provider: Any, server: FakeLLMServer):
    server.script([FakeReply("one two three four")])
    events = await _collect(provider.stream(_ask()))
    deltas = [e.text for e in events if e.type == "text_delta"]
    assert len(deltas) > 1 and "".join(deltas) == "one two three four"
    assert events[-1].type == "done" and [e.type for e in events].count("done") == 1
    assert events[-1].response is not None and events[-1].response.text == "one two three four"
    assert _body(server)["stream"] is True


async def test_openai__system_prompt_placement(server: FakeLLMServer):
    for api in APIS:
        llm = await _provider(server, api)
        server.script(["ok"])
        await llm.generate(_ask(system="Be brief."))
        await llm.aclose()
    responses, chat = _body(server, 0), _body(server, 1)
    assert responses["instructions"] == "Be brief."
    assert responses["input"] == [{"type": "message", "role": "user", "content": "hi"}]
    assert chat["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"},
    ]


async def test_openai__temperature_and_max_output_tokens(server: FakeLLMServer):
    server.script(["a", "b", "c"])
    for name, api in [("openai", "responses"), ("openai", "chat_completions"), ("ollama", None)]:
        llm = await _provider(server, api or "chat_completions", name)
        await llm.generate(_ask(temperature=0.2, max_output_tokens=50))
        await llm.aclose()
    responses, chat, ollama = (_body(server, i) for i in range(3))
    assert responses["temperature"] == 0.2 and responses["max_output_tokens"] == 50
    assert chat["temperature"] == 0.2 and chat["max_completion_tokens"] == 50
    assert "max_tokens" not in chat
    # Compatible servers get the older, universally known name.
    assert ollama["max_tokens"] == 50 and "max_completion_tokens" not in ollama


async def test_openai__extra_is_passed_through(server: FakeLLMServer):
    server.script(["a", "b"])
    for api in APIS:
        llm = await _provider(server, api)
        await llm.generate(_ask(extra={"top_p": 0.5, "top_k": 7}))
        await llm.aclose()
    for index in range(2):
        assert _body(server, index)["top_p"] == 0.5
        assert _body(server, index)["top_k"] == 7  # unknown to the client: sent in the body


# ------------------------------------------------------------------------ tool calls


async def test_openai__tool_calls_are_parsed(provider: Any, server: FakeLLMServer):
    fixed = ToolCall(id="call_fixed", name="add", arguments={"a": 5, "b": 6})
    server.script([FakeReply(tool_calls=[("add", {"a": 1, "b": 2}), fixed])] * 2)
    response = await provider.generate(_ask("add", tools=[ADD]))
    events = await _collect(provider.stream(_ask("add", tools=[ADD])))
    streamed = events[-1].response
    assert streamed is not None
    for result in (response, streamed):
        assert [(c.name, c.arguments) for c in result.tool_calls] == [
            ("add", {"a": 1, "b": 2}),
            ("add", {"a": 5, "b": 6}),
        ]
        assert result.tool_calls[0].id.startswith("call_")
        assert result.tool_calls[1].id == "call_fixed"
        assert result.finish_reason == "tool_calls"
    assert [e.tool_call for e in events if e.type == "tool_call"] == streamed.tool_calls


async def test_openai__tool_specs_format(server: FakeLLMServer):
    server.script(["a", "b"])
    for api in APIS:
        llm = await _provider(server, api)
        await llm.generate(_ask(tools=[ADD, LOOSE]))
        await llm.aclose()
    responses, chat = _body(server, 0), _body(server, 1)
    assert responses["tools"][0] == {
        "type": "function",
        "name": "add",
        "description": "Add two numbers.",
        "parameters": ADD.parameters,
        "strict": True,
    }
    # Optional properties: strict mode would refuse the schema, so it is not asked for.
    assert responses["tools"][1]["strict"] is False
    assert chat["tools"][0] == {
        "type": "function",
        "function": {
            "name": "add",
            "description": "Add two numbers.",
            "parameters": ADD.parameters,
        },
    }


CONVERSATION = [
    Message(role="user", content="what is 1+2 and 3+4?"),
    Message(
        role="assistant",
        content="",
        tool_calls=[
            ToolCall(id="call_a", name="add", arguments={"a": 1, "b": 2}),
            ToolCall(id="call_b", name="add", arguments={"a": 3, "b": 4}),
        ],
    ),
    Message(role="tool", tool_call_id="call_a", name="add", content="3"),
    Message(role="tool", tool_call_id="call_b", name="add", content="7"),
]


async def test_openai__chat_sends_tool_calls_and_results(server: FakeLLMServer):
    llm = await _provider(server, "chat_completions")
    server.script(["3 and 7"])
    await llm.generate(LLMRequest(model="m", messages=CONVERSATION, tools=[ADD]))
    await llm.aclose()
    messages = _body(server)["messages"]
    assert messages[1] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_a",
                "type": "function",
                "function": {"name": "add", "arguments": json.dumps({"a": 1, "b": 2})},
            },
            {
                "id": "call_b",
                "type": "function",
                "function": {"name": "add", "arguments": json.dumps({"a": 3, "b": 4})},
            },
        ],
    }
    assert messages[2:] == [
        {"role": "tool", "tool_call_id": "call_a", "content": "3"},
        {"role": "tool", "tool_call_id": "call_b", "content": "7"},
    ]
    assert server.requests[0].tool_results == 2


async def test_openai__responses_sends_tool_calls_and_results(server: FakeLLMServer):
    llm = await _provider(server, "responses")
    server.script(["3 and 7"])
    await llm.generate(LLMRequest(model="m", messages=CONVERSATION, tools=[ADD]))
    await llm.aclose()
    items = _body(server)["input"]
    assert items[1:] == [
        {
            "type": "function_call",
            "call_id": "call_a",
            "name": "add",
            "arguments": '{"a": 1, "b": 2}',
        },
        {
            "type": "function_call",
            "call_id": "call_b",
            "name": "add",
            "arguments": '{"a": 3, "b": 4}',
        },
        {"type": "function_call_output", "call_id": "call_a", "output": "3"},
        {"type": "function_call_output", "call_id": "call_b", "output": "7"},
    ]
    assert server.requests[0].tool_results == 2
    assert server.requests[0].messages[-2:] == [("tool", "3"), ("tool", "7")]


def test_openai__tool_arguments_parsing():
    assert parse_arguments('{"a": 1}') == {"a": 1}
    assert parse_arguments("") == {} and parse_arguments(None) == {}
    # Broken or non-object JSON is kept, so the agent can show the model what it sent.
    assert parse_arguments('{"a": 1') == {"_raw_arguments": '{"a": 1'}
    assert parse_arguments("[1]") == {"_raw_arguments": "[1]"}


def test_openai__strict_schema_detection():
    assert is_strict_schema(ADD.parameters)
    assert not is_strict_schema(LOOSE.parameters)
    nested = {
        "type": "object",
        "properties": {"items": {"type": "array", "items": LOOSE.parameters}},
        "required": ["items"],
        "additionalProperties": False,
    }
    assert not is_strict_schema(nested)


# ------------------------------------------------------------------ structured output


async def test_openai__structured_output_request_format(server: FakeLLMServer):
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "integer"}},
        "required": ["answer"],
        "additionalProperties": False,
    }
    server.script(['{"answer": 3}'] * 2)
    for api in APIS:
        llm = await _provider(server, api)
        response = await llm.generate(_ask(output_schema=schema, output_schema_name="sum"))
        assert json.loads(response.text) == {"answer": 3}
        await llm.aclose()
    responses, chat = _body(server, 0), _body(server, 1)
    assert responses["text"] == {
        "format": {"type": "json_schema", "name": "sum", "schema": schema, "strict": True}
    }
    assert chat["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "sum", "schema": schema, "strict": True},
    }


# ------------------------------------------------------------------------- reasoning


async def test_openai__responses_reasoning_summary(server: FakeLLMServer):
    llm = await _provider(server, "responses")
    server.script([FakeReply("42", reasoning="Six times seven.")] * 2)
    response = await llm.generate(_ask())
    events = await _collect(llm.stream(_ask()))
    await llm.aclose()
    assert response.reasoning == "Six times seven."
    assert response.reasoning_signature is None  # no encrypted content was asked for
    reasoning = [e.text for e in events if e.type == "reasoning_delta"]
    assert "".join(reasoning) == "Six times seven." and len(reasoning) > 1
    kinds = [e.type for e in events]
    assert kinds.index("reasoning_delta") < kinds.index("text_delta")
    assert events[-1].response is not None
    assert events[-1].response.reasoning == "Six times seven."


async def test_openai__responses_encrypted_reasoning_round_trips(server: FakeLLMServer):
    llm = await _provider(server, "responses")
    server.script([FakeReply(reasoning="Let me add.", tool_calls=[("add", {"a": 1, "b": 2})]), "3"])
    include = {"include": ["reasoning.encrypted_content"], "store": False}
    first = await llm.generate(_ask(tools=[ADD], extra=include))
    assert first.reasoning_signature and first.reasoning_signature.startswith("openai-reasoning:")
    call = first.tool_calls[0]
    conversation = [
        Message(role="user", content="hi"),
        first.as_message(),
        Message(role="tool", tool_call_id=call.id, content="3"),
    ]
    await llm.generate(LLMRequest(model="m", messages=conversation, extra=include))
    await llm.aclose()
    items = _body(server, 1)["input"]
    reasoning = items[1]
    assert reasoning["type"] == "reasoning" and reasoning["id"].startswith("rs_")
    assert reasoning["encrypted_content"].startswith("encrypted-")
    assert reasoning["summary"] == [{"type": "summary_text", "text": "Let me add."}]
    assert [item["type"] for item in items[2:]] == ["function_call", "function_call_output"]


async def test_openai__chat_reasoning_content_of_compatible_servers(server: FakeLLMServer):
    llm = await _provider(server, "chat_completions", name="vllm")
    server.script([FakeReply("4", reasoning="2+2 is 4.")] * 2)
    response = await llm.generate(_ask())
    events = await _collect(llm.stream(_ask()))
    await llm.aclose()
    assert response.reasoning == "2+2 is 4."
    assert "".join(e.text for e in events if e.type == "reasoning_delta") == "2+2 is 4."
    assert events[-1].response is not None and events[-1].response.reasoning == "2+2 is 4."
    # Reasoning is not sent back: compatible servers refuse it.
    conversation = [Message(role="user", content="x"), response.as_message()]
    server.script(["ok"])
    llm = await _provider(server, "chat_completions", name="vllm")
    await llm.generate(LLMRequest(model="m", messages=conversation))
    await llm.aclose()
    assert _body(server, 2)["messages"][1] == {"role": "assistant", "content": "4"}


# ---------------------------------------------------------------------------- usage


@pytest.mark.parametrize("stream", [False, True])
async def test_openai__usage_mapping(provider: Any, server: FakeLLMServer, stream: bool):
    reply = FakeReply("x", usage=(100, 20), cached_tokens=40, reasoning_tokens=7)
    server.script([reply])
    if stream:
        events = await _collect(provider.stream(_ask()))
        response = events[-1].response
        assert response is not None
    else:
        response = await provider.generate(_ask())
    assert response.usage == Usage(
        input_tokens=100, output_tokens=20, cache_read_tokens=40, reasoning_tokens=7
    )
    if "messages" in _body(server) and stream:
        assert _body(server)["stream_options"] == {"include_usage": True}


async def test_openai__responses_cache_write_tokens(server: FakeLLMServer):
    llm = await _provider(server, "responses")
    server.script([FakeReply("x", usage=(100, 5), cache_creation_tokens=30)])
    response = await llm.generate(_ask())
    await llm.aclose()
    assert response.usage.cache_creation_tokens == 30


async def test_openai__responses_incomplete_is_length(server: FakeLLMServer):
    llm = await _provider(server, "responses")
    server.script([FakeReply("trunc", finish_reason="max_output_tokens")] * 2)
    response = await llm.generate(_ask())
    events = await _collect(llm.stream(_ask()))
    await llm.aclose()
    assert response.finish_reason == "length" and response.text == "trunc"
    assert events[-1].response is not None and events[-1].response.finish_reason == "length"


# ------------------------------------------------------------- create_provider and env


async def test_create_provider__openai_reads_env(
    server: FakeLLMServer, monkeypatch: pytest.MonkeyPatch, clean_env: None
):
    monkeypatch.setenv("OPENAI_API_KEY", "env-key")
    monkeypatch.setenv("OPENAI_BASE_URL", server.url)
    llm: LLMProvider = create_provider("openai")
    server.script(["ok"])
    assert (await llm.generate(_ask())).text == "ok"
    await llm.aclose()  # type: ignore[attr-defined]
    assert server.requests[0].api == "responses"
    assert server.requests[0].headers["authorization"] == "Bearer env-key"


async def test_create_provider__explicit_base_url_and_key_win(
    server: FakeLLMServer, monkeypatch: pytest.MonkeyPatch, clean_env: None
):
    monkeypatch.setenv("OPENAI_API_KEY", "env-key")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    llm = create_provider(
        "openai", model_api="chat_completions", base_url=server.url, api_key="mine"
    )
    server.script(["ok"])
    await llm.generate(_ask())
    await llm.aclose()  # type: ignore[attr-defined]
    assert server.requests[0].api == "chat"
    assert server.requests[0].headers["authorization"] == "Bearer mine"


def test_create_provider__openai_without_key_is_a_configuration_error(clean_env: None):
    with pytest.raises(ConfigurationError, match="OPENAI_API_KEY"):
        create_provider("openai")


@pytest.mark.parametrize(
    ("name", "url"),
    [
        ("ollama", "http://localhost:11434/v1/"),
        ("vllm", "http://localhost:8000/v1/"),
        ("groq", "https://api.groq.com/openai/v1/"),
        ("together", "https://api.together.xyz/v1/"),
        ("fireworks", "https://api.fireworks.ai/inference/v1/"),
    ],
)
def test_create_provider__compatible_default_urls(
    name: str, url: str, monkeypatch: pytest.MonkeyPatch, clean_env: None
):
    for env in ("GROQ_API_KEY", "TOGETHER_API_KEY", "FIREWORKS_API_KEY"):
        monkeypatch.setenv(env, "k")
    llm: Any = create_provider(name)
    assert llm.name == name
    assert str(llm.client.base_url) == url
    assert type(llm).__name__ == "OpenAIChatProvider"


def test_create_provider__ollama_host_and_default_key(
    monkeypatch: pytest.MonkeyPatch, clean_env: None
):
    monkeypatch.setenv("OLLAMA_HOST", "10.0.0.5:11434")
    llm: Any = create_provider("ollama", model_api="responses")
    assert str(llm.client.base_url) == "http://10.0.0.5:11434/v1/"
    assert llm.client.api_key == "ollama"
    assert type(llm).__name__ == "OpenAIResponsesProvider"


async def test_create_provider__groq_key_from_env(
    server: FakeLLMServer, monkeypatch: pytest.MonkeyPatch, clean_env: None
):
    monkeypatch.setenv("GROQ_API_KEY", "gsk-test")
    monkeypatch.setenv("OPENAI_API_KEY", "must-not-leak")
    llm = create_provider("groq", base_url=server.url)
    server.script(["ok"])
    await llm.generate(_ask())
    await llm.aclose()  # type: ignore[attr-defined]
    assert server.requests[0].headers["authorization"] == "Bearer gsk-test"


def test_create_provider__groq_without_key(clean_env: None):
    with pytest.raises(ConfigurationError, match="GROQ_API_KEY"):
        create_provider("groq")


async def test_create_provider__openai_compatible(
    server: FakeLLMServer, monkeypatch: pytest.MonkeyPatch, clean_env: None
):
    with pytest.raises(ConfigurationError, match="base_url"):
        create_provider("openai_compatible")
    monkeypatch.setenv("OPENAI_API_KEY", "must-not-leak")
    llm = create_provider("openai-compatible", base_url=server.url)
    server.script(["ok"])
    await llm.generate(_ask())
    await llm.aclose()  # type: ignore[attr-defined]
    assert "must-not-leak" not in server.requests[0].headers["authorization"]
