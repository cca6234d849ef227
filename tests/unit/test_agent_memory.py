"""Session memory in the agent loop: load, compact, save, concurrent saves."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from polos.agents import Agent
from polos.errors import SessionConflictError
from polos.llm import ScriptedProvider, ScriptedReply
from polos.testing import run_once


@dataclass
class Memory:
    summary: str | None
    messages: list[dict[str, Any]]
    version: int


@dataclass
class FakeSessions:
    """The orchestrator's session API, in memory (optimistic versions like the real one)."""

    store: dict[str, Memory] = field(default_factory=dict)
    saves: int = 0

    async def get(self, session_id: str) -> Memory:
        return self.store.get(session_id, Memory(None, [], 0))

    async def save(
        self, session_id: str, messages: list[dict[str, Any]], summary: str | None = None,
        expected_version: int | None = None,
    ) -> Memory:  # fmt: skip
        current = self.store.get(session_id, Memory(None, [], 0))
        if expected_version is not None and expected_version != current.version:
            raise SessionConflictError(409, "version_conflict", "changed")
        self.saves += 1
        self.store[session_id] = Memory(summary, list(messages), current.version + 1)
        return self.store[session_id]


class FakeClient:
    def __init__(self) -> None:
        self.sessions = FakeSessions()


def _agent(
    replies: list[ScriptedReply], client: FakeClient, **kw: Any
) -> tuple[Agent[Any], ScriptedProvider]:
    provider = ScriptedProvider(replies)
    agent: Agent[Any] = Agent(
        id="chat", provider=provider, model="m", system_prompt="Be brief.", **kw
    )
    agent.attach(client)
    return agent, provider


async def test_second_run_of_a_session_sees_the_first_and_both_are_saved() -> None:
    client = FakeClient()
    agent, provider = _agent(
        [ScriptedReply(text="Hi Ada"), ScriptedReply(text="Your name is Ada")], client
    )
    payload = agent.payload("I am Ada", session_id="s1").model_dump(mode="json")
    outcome, recorder = await run_once(agent, payload)
    assert outcome.error is None, outcome.error
    assert [r.key for r in recorder.records] == ["memory:load", "llm:1", "memory:save"]
    stored = client.sessions.store["s1"]
    assert [m["role"] for m in stored.messages] == ["user", "assistant"] and stored.version == 1

    payload = agent.payload("What is my name?", session_id="s1").model_dump(mode="json")
    outcome, second = await run_once(agent, payload, execution_id="second")
    sent = provider.requests[1].messages
    assert [m.content for m in sent] == ["I am Ada", "Hi Ada", "What is my name?"]
    assert len(client.sessions.store["s1"].messages) == 4

    # Replaying the second run (a crash after it finished) neither calls nor saves again.
    saves = client.sessions.saves
    again, _ = await run_once(
        agent, payload, execution_id="second", history=second.records, attempt=2
    )
    assert again.result == outcome.result
    assert client.sessions.saves == saves and len(provider.requests) == 2


async def test_over_budget__older_turns_are_summarised_by_a_recorded_model_call() -> None:
    client = FakeClient()
    old = []
    for i in range(10):
        old += [
            {"role": "user", "content": f"question {i} " + "x" * 200},
            {"role": "assistant", "content": f"answer {i}"},
        ]
    client.sessions.store["s"] = Memory("earlier: nothing", old, 3)
    agent, provider = _agent(
        [ScriptedReply(text="SUMMARY: ten questions"), ScriptedReply(text="ok")],
        client,
        memory_keep_messages=4,
        memory_token_budget=200,
    )
    outcome, recorder = await run_once(
        agent, agent.payload("next", session_id="s").model_dump(mode="json")
    )
    assert outcome.error is None, outcome.error
    assert [r.key for r in recorder.records] == [
        "memory:load",
        "llm:compaction",
        "llm:1",
        "memory:save",
    ]
    assert "earlier: nothing" in provider.requests[0].messages[0].content
    answered = provider.requests[1]
    assert "SUMMARY: ten questions" in (answered.system or "") and "Be brief." in (
        answered.system or ""
    )
    assert answered.messages[0].role == "user" and answered.messages[0].content.startswith(
        "question 8"
    )
    stored = client.sessions.store["s"]
    assert stored.summary == "SUMMARY: ten questions" and stored.version == 4
    assert stored.messages[0]["role"] == "user"


async def test_a_concurrent_save__this_runs_turns_are_appended_not_lost() -> None:
    client = FakeClient()
    agent, _ = _agent([ScriptedReply(text="A")], client)
    original_get = client.sessions.get
    calls = 0

    async def racing_get(session_id: str) -> Memory:
        nonlocal calls
        calls += 1
        memory = await original_get(session_id)
        if calls == 1:  # another run saves right after this run loaded
            client.sessions.store[session_id] = Memory(
                None, [{"role": "user", "content": "other"}], 1
            )
        return memory

    client.sessions.get = racing_get  # type: ignore[method-assign]
    outcome, _ = await run_once(
        agent, agent.payload("mine", session_id="s").model_dump(mode="json")
    )
    assert outcome.error is None, outcome.error
    stored = client.sessions.store["s"]
    assert [m["content"] for m in stored.messages] == ["other", "mine", "A"] and stored.version == 2


def test_a_worker_attaches_its_own_client_to_its_agents() -> None:
    from polos import PolosClient, Worker

    client = PolosClient("http://127.0.0.1:9", project_id="p1")
    agent: Agent[Any] = Agent(id="attached", provider=ScriptedProvider([]), model="m")
    Worker(client=client, agents=[agent])
    assert agent.api_client() is client
