"""Scripted fakes: ``ScriptedProvider`` (in process) and ``FakeLLMServer`` itself."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from polos.errors import LLMRateLimitError
from polos.llm import (
    LLMProvider,
    LLMRequest,
    LLMResponse,
    Message,
    ScriptedProvider,
    ScriptedReply,
    ToolCall,
    Usage,
    create_provider,
)
from polos.testing import FakeLLMServer, FakeReply, FakeRequest


def _ask(text: str = "hello there", **fields: Any) -> LLMRequest:
    return LLMRequest(model="m", messages=[Message(role="user", content=text)], **fields)


# ------------------------------------------------------------------ ScriptedProvider


async def test_scripted__replies_in_order_and_requests_recorded():
    provider: LLMProvider = ScriptedProvider(
        [ScriptedReply(tool_calls=[("add", {"a": 1})]), ScriptedReply(text="done")]
    )
    scripted = provider
    assert isinstance(scripted, ScriptedProvider) and scripted.name == "scripted"
    first = await provider.generate(_ask("first"))
    second = await provider.generate(_ask("second"))
    assert first.tool_calls == [ToolCall(id="call_1", name="add", arguments={"a": 1})]
    assert first.finish_reason == "tool_calls"
    assert second.text == "done" and second.finish_reason == "stop"
    assert [r.messages[0].content for r in scripted.requests] == ["first", "second"]
    assert scripted.remaining == 0
    with pytest.raises(AssertionError, match="no reply left for call #3"):
        await provider.generate(_ask())


async def test_scripted__tool_call_ids_are_unique_and_objects_kept():
    fixed = ToolCall(id="mine", name="x", arguments={})
    reply = ScriptedReply(tool_calls=[("a", {}), fixed])
    provider = ScriptedProvider([reply, reply])
    one, two = await provider.generate(_ask()), await provider.generate(_ask())
    assert [c.id for c in one.tool_calls + two.tool_calls] == ["call_1", "mine", "call_2", "mine"]


async def test_scripted__function_script_and_llm_response():
    def echo(request: LLMRequest) -> ScriptedReply | LLMResponse:
        text = request.messages[-1].content
        if text == "raw":
            return LLMResponse(text="as is", model="other")
        return ScriptedReply(text=text.upper())

    provider = ScriptedProvider(echo)
    assert (await provider.generate(_ask("shout"))).text == "SHOUT"
    raw = await provider.generate(_ask("raw"))
    assert raw.text == "as is" and raw.model == "other"
    assert len(provider.requests) == 2 and provider.remaining == 0


async def test_scripted__error_is_raised_and_consumed():
    provider = ScriptedProvider(
        [ScriptedReply(error=LLMRateLimitError("slow down", retry_after=1.0)), ScriptedReply("ok")]
    )
    with pytest.raises(LLMRateLimitError):
        await provider.generate(_ask())
    assert (await provider.generate(_ask())).text == "ok"


async def test_scripted__stream_deltas_then_done():
    provider = ScriptedProvider(
        [ScriptedReply(text="the quick brown fox", reasoning="think first", tool_calls=[("t", {})])]
    )
    events = [event async for event in provider.stream(_ask())]
    kinds = [event.type for event in events]
    text = [event.text for event in events if event.type == "text_delta"]
    assert len(text) > 1 and "".join(text) == "the quick brown fox"
    assert "".join(e.text for e in events if e.type == "reasoning_delta") == "think first"
    assert kinds.index("reasoning_delta") < kinds.index("text_delta") < kinds.index("tool_call")
    assert kinds[-1] == "done" and kinds.count("done") == 1
    done = events[-1].response
    assert done is not None and done.text == "the quick brown fox"
    assert done.reasoning == "think first" and done.tool_calls[0].name == "t"


async def test_scripted__usage_explicit_or_estimated():
    provider = ScriptedProvider(
        [ScriptedReply("a b c"), ScriptedReply("x", usage=Usage(input_tokens=9, output_tokens=2))]
    )
    estimated = await provider.generate(_ask("one two", system="sys"))
    assert estimated.usage == Usage(input_tokens=3, output_tokens=3)
    assert (await provider.generate(_ask())).usage == Usage(input_tokens=9, output_tokens=2)


async def test_scripted__requests_are_copies():
    provider = ScriptedProvider([ScriptedReply("ok")])
    request = _ask("before")
    await provider.generate(request)
    request.messages[0].content = "after"
    assert provider.requests[0].messages[0].content == "before"


# -------------------------------------------------------------------- FakeLLMServer


async def test_fake_server__respond_with_sees_normalised_requests():
    seen: list[FakeRequest] = []

    def answer(request: FakeRequest) -> FakeReply:
        seen.append(request)
        return FakeReply(f"{request.api}: {request.messages[-1][1]}")

    conversation = [
        Message(role="user", content="add"),
        Message(role="assistant", tool_calls=[ToolCall(id="c1", name="add", arguments={})]),
        Message(role="tool", tool_call_id="c1", content="3"),
        Message(role="user", content="thanks"),
    ]
    request = LLMRequest(model="m", system="sys", messages=conversation)
    with FakeLLMServer() as server:
        server.respond_with(answer)
        for name, api in [
            ("openai", "responses"),
            ("openai", "chat_completions"),
            ("anthropic", None),
        ]:
            url = server.anthropic_url if name == "anthropic" else server.url
            provider: Any = create_provider(name, model_api=api, base_url=url, api_key="k")
            response = await provider.generate(request)
            await provider.aclose()
            assert response.text.endswith(": thanks")
        assert server.count() == 3 and server.count("anthropic") == 1
    assert [r.api for r in seen] == ["responses", "chat", "anthropic"]
    for fake in seen:
        assert fake.messages[0] == ("system", "sys")
        assert ("tool", "3") in fake.messages and fake.messages[-1] == ("user", "thanks")
        assert fake.tool_results == 1 and fake.model == "m" and not fake.stream


async def test_fake_server__concurrent_requests_are_all_recorded():
    with FakeLLMServer() as server:
        server.respond_with(lambda request: FakeReply("ok", delay=0.01))
        provider: Any = create_provider(
            "openai", model_api="chat_completions", base_url=server.url, api_key="k"
        )
        responses = await asyncio.gather(*(provider.generate(_ask()) for _ in range(10)))
        await provider.aclose()
        assert server.count() == 10 and server.count("chat") == 10
        assert len({r.response_id for r in responses}) == 10


async def test_fake_server__raw_sse_shapes():
    """The wire format itself, read without any client library."""
    with FakeLLMServer(["one two", "one two", "one two"]) as server:
        async with httpx.AsyncClient(base_url=server.root) as http:
            chat = await http.post(
                "/v1/chat/completions",
                json={"model": "m", "messages": [], "stream": True},
            )
            responses = await http.post(
                "/v1/responses", json={"model": "m", "input": "x", "stream": True}
            )
            messages = await http.post(
                "/v1/messages",
                json={"model": "m", "max_tokens": 5, "messages": [], "stream": True},
            )
    assert chat.headers["content-type"].startswith("text/event-stream")
    assert chat.text.rstrip().endswith("data: [DONE]")
    events = [line[7:] for line in responses.text.splitlines() if line.startswith("event: ")]
    assert events[0] == "response.created" and events[-1] == "response.completed"
    assert "response.output_text.delta" in events
    names = [line[7:] for line in messages.text.splitlines() if line.startswith("event: ")]
    assert names[0] == "message_start" and names[-1] == "message_stop"
    first = json.loads(messages.text.split("data: ", 1)[1].split("\n", 1)[0])
    assert first["type"] == "message_start"


def test_fake_server__start_stop_and_urls():
    server = FakeLLMServer().start()
    try:
        assert server.url == f"http://127.0.0.1:{server.port}/v1"
        assert server.anthropic_url == server.root
        response = httpx.post(f"{server.url}/chat/completions", json={"model": "m"})
        assert response.status_code == 400  # nothing scripted
        assert server.count("chat") == 1
    finally:
        server.stop()
    server.stop()  # idempotent
