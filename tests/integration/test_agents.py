"""Agents end to end: a real orchestrator and worker, the real openai client, a fake model.

The fake server answers by the state of the conversation (how many tool results it
holds), so a request repeated after a crash gets the same answer; it counts every
request, which is how "no completed model call is paid twice" is checked.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from polos import PolosClient
from polos.testing import FakeLLMServer, FakeReply, FakeRequest
from polos.testing._processes import ServerProcess
from tests.integration.conftest import WORKERS_DIR, Workers, count_lines, wait_until
from tests.integration.workers.agent_worker import assistant

AGENT_WORKER = WORKERS_DIR / "agent_worker.py"


def _script(request: FakeRequest) -> FakeReply:
    done = request.tool_results
    if done < 2:
        return FakeReply(tool_calls=[("lookup", {"x": done + 1})], usage=(30, 5))
    return FakeReply("1 and 4", usage=(50, 4))


@pytest.fixture
def fake_llm() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as server:
        server.respond_with(_script)
        yield server


def _env(fake_llm: FakeLLMServer, **extra: str) -> dict[str, str]:
    return {"FAKE_LLM_URL": fake_llm.url, "OPENAI_API_KEY": "test-key", **extra}


@pytest.mark.parametrize("api", ["chat_completions", "responses"])
async def test_agent_run__tools_then_answer_through_the_real_openai_client(
    server: ServerProcess, start_worker: Workers, fake_llm: FakeLLMServer, side_log: Path, api: str
) -> None:
    start_worker(AGENT_WORKER, env=_env(fake_llm, FAKE_LLM_API=api))
    async with PolosClient(server.url) as client:
        result = await assistant.run(client, "look up 1 and 2", timeout=60)
    assert result.result == "1 and 4" and result.stop_reason == "completed"
    assert [r.arguments for r in result.tool_results] == [{"x": 1}, {"x": 2}]
    assert result.usage.input_tokens == 110 and result.total_steps == 3
    assert fake_llm.count() == 3
    assert (
        count_lines(side_log, "lookup 1 start") == 1 and count_lines(side_log, "lookup 2 end") == 1
    )
    # What the model was sent: the system prompt and the tool, then each tool's result.
    last = fake_llm.requests[-1]
    assert last.tool_results == 2 and "You look numbers up." in str(last.body)


async def test_agent_crash__kill9_mid_tool_resumes_without_repeating_a_model_call(
    server: ServerProcess, start_worker: Workers, fake_llm: FakeLLMServer, side_log: Path
) -> None:
    env = _env(fake_llm, SLOW_LOOKUP="2")
    victim = start_worker(AGENT_WORKER, env=env)
    async with PolosClient(server.url) as client:
        handle = await client.invoke(assistant.id, assistant.payload("go").model_dump(mode="json"))
        wait_until(lambda: count_lines(side_log, "lookup 2 start") == 1, what="the slow tool call")
        victim.kill()
        start_worker(AGENT_WORKER, env=_env(fake_llm))
        result = assistant.parse_result(await handle.result(timeout=60))
    assert result.result == "1 and 4"
    # Model calls 1 and 2 were recorded before the kill: only call 3 is new.
    assert fake_llm.count() == 3
    # The finished tool call ran once; the one in flight at the kill ran again.
    assert count_lines(side_log, "lookup 1 start") == 1
    assert (
        count_lines(side_log, "lookup 2 start") == 2 and count_lines(side_log, "lookup 2 end") == 1
    )


async def test_session_memory__a_second_run_continues_the_conversation_of_the_first(
    server: ServerProcess, start_worker: Workers, fake_llm: FakeLLMServer
) -> None:
    fake_llm.respond_with(lambda request: FakeReply(f"re: {request.messages[-1][1]}"))
    start_worker(AGENT_WORKER, env=_env(fake_llm))
    async with PolosClient(server.url) as client:
        first = await assistant.run(client, "my name is Ada", session_id="user-1", timeout=60)
        second = await assistant.run(client, "what is my name?", session_id="user-1", timeout=60)
        stored = await client.sessions.get("user-1")
    assert first.text == "re: my name is Ada"
    # The second call carried the first turn (user, assistant) before the new question.
    texts = [text for _, text in fake_llm.requests[-1].messages if text]
    assert "my name is Ada" in texts and "re: my name is Ada" in texts
    assert texts[-1] == "what is my name?"
    assert second.session_id == "user-1"
    assert stored.version == 2 and [m["role"] for m in stored.messages] == ["user", "assistant"] * 2


async def test_agent_stream__text_deltas_and_tool_events_arrive_live_then_the_result(
    server: ServerProcess, start_worker: Workers, fake_llm: FakeLLMServer
) -> None:
    start_worker(AGENT_WORKER, env=_env(fake_llm))
    async with PolosClient(server.url) as client:
        stream = await assistant.stream(client, "look up 1 and 2")
        events = [event async for event in stream]
        result = await stream.result(timeout=60)
    kinds = [e.type for e in events]
    assert kinds.count("llm_start") == 3 and kinds.count("tool_call") == 2
    assert kinds.count("tool_result") == 2 and kinds[-1] == "finish"
    text = "".join(e.text for e in events if e.type == "text_delta")
    assert text == result.text == "1 and 4"
    assert all(r.stream for r in fake_llm.requests)  # the provider's streaming API was used


SEED_WORKER = WORKERS_DIR / "seed_agent_worker.py"


def _seed_script(request: FakeRequest) -> FakeReply:
    """The fake model of the seed example and the router: it answers by who asks."""
    system, first = request.messages[0][1], request.messages[-1][1]
    asked = next(text for role, text in request.messages if role == "user")
    if asked.startswith("Validate this order"):
        if request.tool_results == 0:
            items = ["unicorn"] if "unicorn" in asked else ["lamp"]
            return FakeReply(tool_calls=[("check_inventory", {"items": items})])
        in_stock = "false" not in first
        reason = "all in stock" if in_stock else "unicorn is out of stock"
        return FakeReply(f'{{"valid": {str(in_stock).lower()}, "reason": "{reason}"}}')
    if "Route the question" in system:
        return FakeReply(
            '{"specialist": "billing"}' if "invoice" in asked else '{"specialist": "tech"}'
        )
    who = "billing" if "billing" in system else "tech"
    return FakeReply(f"{who} says: ok" if asked.startswith("Review") else f"{who} answer")


@pytest.fixture
def seed_llm() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as server:
        server.respond_with(_seed_script)
        yield server


async def test_seed_readme_example__agent_validates_then_approval_charge_pickup_as_written(
    server: ServerProcess, start_worker: Workers, seed_llm: FakeLLMServer, side_log: Path
) -> None:
    from tests.integration.test_waits import parked_at

    env = {"OPENAI_BASE_URL": seed_llm.url, "OPENAI_API_KEY": "test-key"}
    start_worker(SEED_WORKER, env=env)
    async with PolosClient(server.url) as client:
        big = {"id": "o-1", "amount": 5000, "items": ["lamp"]}
        [eid] = (await client.events.publish("order/new", big)).triggered
        await parked_at(client, eid, "approval")
        await client.resume(eid, "approval", {"approved": True})
        await parked_at(client, eid, "wait_pickup")
        await client.events.publish("warehouse.pickup/o-1", {})
        assert await client.result(eid, timeout=30) == {
            "status": "completed",
            "payment_id": "pay_o-1",
            "reason": None,
        }
        # The validation ran as a child agent execution: one tool call, two model calls.
        steps = [s.key for s in await client.list_steps(eid)]
        assert steps == ["validate_order", "approval", "charge", "wait_pickup", "notify"]
        assert count_lines(side_log, "charge " + eid) == 1
        assert count_lines(side_log, "check_inventory") == 1
        assert seed_llm.count() == 2

        bad = {"id": "o-2", "amount": 20, "items": ["unicorn"]}
        [bad_id] = (await client.events.publish("order/new", bad)).triggered
        assert await client.result(bad_id, timeout=30) == {
            "status": "invalid",
            "payment_id": None,
            "reason": "unicorn is out of stock",
        }
        assert count_lines(side_log, "charge " + bad_id) == 0


async def test_router_workflow__routes_answers_and_fans_out_reviews_over_agents(
    server: ServerProcess, start_worker: Workers, seed_llm: FakeLLMServer
) -> None:
    start_worker(SEED_WORKER, env={"OPENAI_BASE_URL": seed_llm.url, "OPENAI_API_KEY": "k"})
    async with PolosClient(server.url) as client:
        handle = await client.invoke("support", {"text": "my invoice is wrong"})
        result = await handle.result(timeout=30)
        assert result == {
            "route": "billing",
            "answer": "billing answer",
            "reviews": ["billing says: ok", "tech says: ok"],
            "review_agents": ["billing", "tech"],
        }
        # Each agent run is a child execution with its own recorded model call.
        page = await client.list_executions(limit=100)
        children = [e.workflow_id for e in page.items if e.parent_id == handle.id]
        assert sorted(children) == ["billing", "billing", "router", "tech"]
        assert seed_llm.count() == 4
