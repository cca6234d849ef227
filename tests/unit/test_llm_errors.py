"""Errors of the providers: classification into ``polos.errors.LLM*Error`` and the
adapters' own retry loop, through the real clients against ``FakeLLMServer``."""

from __future__ import annotations

import email.utils
import socket
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from polos.errors import (
    ConfigurationError,
    LLMAuthenticationError,
    LLMBadRequestError,
    LLMError,
    LLMRateLimitError,
    LLMUnavailableError,
)
from polos.llm import PROVIDER_NAMES, LLMRequest, Message, create_provider
from polos.llm._errors import RetryPolicy, classify_error, parse_retry_after
from polos.testing import FakeLLMServer, FakeReply

# (provider name, model_api) of each adapter.
ADAPTERS = [("openai", "responses"), ("openai", "chat_completions"), ("anthropic", None)]


@pytest.fixture(scope="module")
def shared_server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as server:
        yield server


@pytest.fixture
def server(shared_server: FakeLLMServer) -> FakeLLMServer:
    shared_server.reset()
    return shared_server


def _make(server: FakeLLMServer, name: str, api: str | None, **options: Any) -> Any:
    url = server.anthropic_url if name == "anthropic" else server.url
    options.setdefault("retry_base_delay", 0.001)
    return create_provider(name, model_api=api, base_url=url, api_key="k", **options)


@pytest.fixture(params=ADAPTERS, ids=[api or name for name, api in ADAPTERS])
async def llm(request: pytest.FixtureRequest, server: FakeLLMServer) -> AsyncIterator[Any]:
    name, api = request.param
    provider = _make(server, name, api)
    yield provider
    await provider.aclose()


ASK = LLMRequest(model="m", messages=[Message(role="user", content="hi")])

RATE_LIMITED = FakeReply(status=429, headers={"retry-after": "0.001"})


async def test_errors__429_with_retry_after_is_retried(llm: Any, server: FakeLLMServer):
    server.script([RATE_LIMITED, FakeReply(status=429, headers={"retry-after-ms": "1"}), "ok"])
    response = await llm.generate(ASK)
    assert response.text == "ok"
    assert server.count() == 3


async def test_errors__429_exhausted_raises_rate_limit(server: FakeLLMServer):
    provider = _make(server, "openai", "chat_completions", max_retries=2)
    server.respond_with(lambda request: FakeReply(status=429, headers={"retry-after": "0.002"}))
    with pytest.raises(LLMRateLimitError) as caught:
        await provider.generate(ASK)
    await provider.aclose()
    assert caught.value.retry_after == pytest.approx(0.002)
    assert caught.value.status_code == 429 and caught.value.provider == "openai"
    assert caught.value.retryable
    assert server.count() == 3  # the first try and two retries


async def test_errors__401_is_not_retried(llm: Any, server: FakeLLMServer):
    server.respond_with(lambda request: FakeReply(status=401))
    with pytest.raises(LLMAuthenticationError) as caught:
        await llm.generate(ASK)
    assert caught.value.status_code == 401 and not caught.value.retryable
    assert server.count() == 1


@pytest.mark.parametrize("status", [400, 404, 422])
async def test_errors__bad_request_is_not_retried(llm: Any, server: FakeLLMServer, status: int):
    server.respond_with(lambda request: FakeReply(status=status))
    with pytest.raises(LLMBadRequestError) as caught:
        await llm.generate(ASK)
    assert caught.value.status_code == status
    assert "fake error" in str(caught.value)  # the API's message is kept
    assert server.count() == 1


async def test_errors__403_is_authentication(server: FakeLLMServer):
    provider = _make(server, "anthropic", None)
    server.script([FakeReply(status=403)])
    with pytest.raises(LLMAuthenticationError):
        await provider.generate(ASK)
    await provider.aclose()


async def test_errors__500_is_retried_then_succeeds(llm: Any, server: FakeLLMServer):
    server.script([FakeReply(status=500), FakeReply(status=503), "recovered"])
    assert (await llm.generate(ASK)).text == "recovered"
    assert server.count() == 3


async def test_errors__500_exhausted_raises_unavailable(server: FakeLLMServer):
    provider = _make(server, "openai", "responses", max_retries=1)
    server.respond_with(lambda request: FakeReply(status=500))
    with pytest.raises(LLMUnavailableError) as caught:
        await provider.generate(ASK)
    await provider.aclose()
    assert caught.value.status_code == 500 and caught.value.retryable
    assert server.count() == 2


async def test_errors__anthropic_529_overloaded_is_retried(server: FakeLLMServer):
    provider = _make(server, "anthropic", None, max_retries=1)
    server.script([FakeReply(status=529), "ok", FakeReply(status=529), FakeReply(status=529)])
    assert (await provider.generate(ASK)).text == "ok"
    with pytest.raises(LLMUnavailableError) as caught:
        await provider.generate(ASK)
    await provider.aclose()
    assert caught.value.status_code == 529
    assert server.count() == 4


async def test_errors__stream_is_retried_before_its_first_event(llm: Any, server: FakeLLMServer):
    server.script([RATE_LIMITED, FakeReply(status=500), "streamed fine"])
    events = [event async for event in llm.stream(ASK)]
    assert events[-1].response is not None and events[-1].response.text == "streamed fine"
    assert server.count() == 3


async def test_errors__stream_401_raises(llm: Any, server: FakeLLMServer):
    server.script([FakeReply(status=401)])
    with pytest.raises(LLMAuthenticationError):
        async for _ in llm.stream(ASK):
            pass
    assert server.count() == 1


async def test_errors__insufficient_quota_is_not_a_rate_limit(server: FakeLLMServer):
    provider = _make(server, "openai", "chat_completions")
    body = {"error": {"message": "You exceeded your quota", "type": "insufficient_quota"}}
    server.script([FakeReply(status=429, error_body=body)])
    with pytest.raises(LLMError) as caught:
        await provider.generate(ASK)
    await provider.aclose()
    assert type(caught.value) is LLMError and not caught.value.retryable
    assert "quota" in str(caught.value)
    assert server.count() == 1


async def test_errors__timeout_is_unavailable(server: FakeLLMServer):
    provider = _make(server, "openai", "chat_completions", timeout=0.05, max_retries=0)
    server.script([FakeReply("late", delay=0.5)])
    with pytest.raises(LLMUnavailableError):
        await provider.generate(ASK)
    await provider.aclose()


async def test_errors__connection_refused_is_unavailable():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    provider: Any = create_provider(
        "openai",
        base_url=f"http://127.0.0.1:{port}/v1",
        api_key="k",
        max_retries=1,
        retry_base_delay=0.001,
    )
    with pytest.raises(LLMUnavailableError):
        await provider.generate(ASK)
    await provider.aclose()


async def test_errors__no_scripted_reply_left_is_a_bad_request(llm: Any, server: FakeLLMServer):
    with pytest.raises(LLMBadRequestError, match="no scripted reply left"):
        await llm.generate(ASK)


# ----------------------------------------------------------------- pure helpers


def test_parse_retry_after__forms():
    assert parse_retry_after({"retry-after": "3"}) == 3.0
    assert parse_retry_after({"Retry-After": "0.5"}) == 0.5
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None and parse_retry_after(None) is None
    date = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 20 < (parse_retry_after({"retry-after": date}) or 0) <= 31


def test_retry_policy__delays():
    policy = RetryPolicy(max_retries=3, base_delay=1.0, max_delay=3.0, jitter=0.0)
    unavailable = LLMUnavailableError("x")
    assert [policy.delay(unavailable, attempt) for attempt in range(4)] == [1.0, 2.0, 3.0, None]
    assert policy.delay(LLMRateLimitError("x", retry_after=7.0), 0) == 7.0
    # A long retry-after is left to the durable step layer rather than slept through.
    assert policy.delay(LLMRateLimitError("x", retry_after=600.0), 0) is None
    assert policy.delay(LLMBadRequestError("x"), 0) is None


def test_classify_error__other_exceptions_are_not_llm_errors():
    assert classify_error(ValueError("x"), provider="openai") is None
    error = LLMBadRequestError("x")
    assert classify_error(error, provider="openai") is error


def test_classify_error__errors_inside_a_stream():
    """Errors sent as SSE events after a 200: classified by their declared type."""
    import anthropic
    import httpx2
    import openai

    request = httpx2.Request("POST", "http://fake/v1/messages")
    overloaded = anthropic.APIStatusError(
        "overloaded",
        response=httpx2.Response(200, request=request),
        body={"type": "error", "error": {"type": "overloaded_error", "message": "busy"}},
    )
    error = classify_error(overloaded, provider="anthropic")
    assert isinstance(error, LLMUnavailableError) and "busy" in str(error)
    failed = openai.APIError("boom", request, body={"message": "boom", "type": "server_error"})
    assert isinstance(classify_error(failed, provider="openai"), LLMUnavailableError)
    limited = openai.APIError(
        "slow", request, body={"message": "slow", "code": "rate_limit_exceeded"}
    )
    assert isinstance(classify_error(limited, provider="openai"), LLMRateLimitError)


# --------------------------------------------------------------- configuration


def test_create_provider__unknown_name_lists_the_known_ones():
    with pytest.raises(ConfigurationError) as caught:
        create_provider("gemini-ish")
    for name in PROVIDER_NAMES:
        assert name in str(caught.value)


def test_create_provider__unknown_model_api():
    with pytest.raises(ConfigurationError, match="chat_completions"):
        create_provider("openai", model_api="completions", api_key="k")
