"""Agents as tools, handoffs, ask_user and model-call rate limits, in memory."""

from __future__ import annotations

from typing import Any

from polos.agents import Agent, Handoff, ask_user_tool
from polos.llm import ScriptedProvider, ScriptedReply
from polos.protocol import StepKind, StepRecord
from polos.sdk import RateLimit
from polos.testing import MemoryRecorder, run_once


def _child_done(recorder: MemoryRecorder, sub: Agent[Any], text: str) -> StepRecord:
    """The record the orchestrator writes when the parked child finished with ``text``."""
    parked = recorder.parked
    assert parked is not None
    output = {"agent_id": sub.id, "execution_id": "child-1", "result": text, "text": text}
    return StepRecord(
        key=parked.key,
        seq=parked.seq,
        kind=parked.kind,
        output={
            "status": "completed",
            "result": output,
            "workflow_id": sub.id,
            "execution_id": "child-1",
        },
    )


async def test_agent_as_tool__a_child_execution_whose_answer_the_model_reads() -> None:
    sub: Agent[Any] = Agent(
        id="researcher", provider=ScriptedProvider([]), model="m", description="Finds facts."
    )
    provider = ScriptedProvider(
        [
            ScriptedReply(tool_calls=[("researcher", {"input": "capital of France?"})]),
            ScriptedReply(text="Paris it is"),
        ]
    )
    boss: Agent[Any] = Agent(id="boss", provider=provider, model="m", tools=[sub])
    assert boss.tools[0].spec().parameters["required"] == ["input"]
    payload = boss.payload("ask").model_dump(mode="json")
    _, recorder = await run_once(boss, payload)
    assert recorder.parked is not None and recorder.parked.kind == StepKind.INVOKE_WAIT
    child = recorder.parked.children[0]
    assert child.workflow_id == "researcher" and child.payload["input"] == "capital of France?"
    history = [*recorder.records, _child_done(recorder, sub, "Paris")]
    outcome, _ = await run_once(boss, payload, history=history, attempt=2)
    result = boss.parse_result(outcome.result)
    assert result.text == "Paris it is" and result.tool_results[0].output == "Paris"
    assert provider.requests[-1].messages[-1].content == "Paris"


async def test_handoff__the_target_gets_the_conversation_and_finishes_the_run() -> None:
    billing: Agent[Any] = Agent(id="billing", provider=ScriptedProvider([]), model="m")
    provider = ScriptedProvider(
        [ScriptedReply(tool_calls=[("transfer_to_billing", {"reason": "refund"})])]
    )
    triage: Agent[Any] = Agent(id="triage", provider=provider, model="m", tools=[Handoff(billing)])
    payload = triage.payload("I want my money back").model_dump(mode="json")
    _, recorder = await run_once(triage, payload)
    child = recorder.parked.children[0]  # type: ignore[union-attr]
    contents = [m["content"] for m in child.payload["input"]]
    assert contents == ["I want my money back", "(Handed over to you: refund)"]
    outcome, _ = await run_once(
        triage,
        payload,
        history=[*recorder.records, _child_done(recorder, billing, "Refunded.")],
        attempt=2,
    )
    result = triage.parse_result(outcome.result)
    assert (
        result.stop_reason == "handoff"
        and result.text == "Refunded."
        and len(provider.requests) == 1
    )


async def test_ask_user__suspends_with_the_question_and_the_answer_goes_to_the_model() -> None:
    provider = ScriptedProvider(
        [
            ScriptedReply(tool_calls=[("ask_user", {"question": "Favourite colour?"})]),
            ScriptedReply(text="Blue, noted"),
        ]
    )
    agent: Agent[Any] = Agent(id="a", provider=provider, model="m", tools=[ask_user_tool()])
    payload = agent.payload("go").model_dump(mode="json")
    _, recorder = await run_once(agent, payload)
    parked = recorder.parked
    assert parked is not None and parked.key.startswith("ask:1:")
    assert (
        parked.spec.data["question"] == "Favourite colour?"
        and parked.spec.data["_source"] == "ask_user"
    )
    answer = StepRecord(
        key=parked.key, seq=parked.seq, kind=StepKind.SUSPEND, output={"data": {"answer": "blue"}}
    )
    outcome, _ = await run_once(agent, payload, history=[*recorder.records, answer], attempt=2)
    result = agent.parse_result(outcome.result)
    assert result.text == "Blue, noted" and '"answer": "blue"' in result.tool_results[0].output


async def test_rate_limits__each_model_call_takes_a_request_and_its_estimated_tokens() -> None:
    provider = ScriptedProvider([ScriptedReply(text="hi")])
    agent: Agent[Any] = Agent(
        id="a",
        provider=provider,
        model="m",
        max_output_tokens=200,
        request_rate_limit="openai-rpm",
        token_rate_limit=RateLimit("openai-tpm", limit=100_000, period=60),
    )
    outcome, recorder = await run_once(agent, agent.payload("hello there").model_dump(mode="json"))
    assert outcome.error is None, outcome.error
    grants = {r.key: r.output for r in recorder.records if r.kind == StepKind.ACQUIRE}
    assert grants["rate:llm:1:requests"]["units"] == 1
    assert 200 < grants["rate:llm:1:tokens"]["units"] < 300  # prompt estimate + max_output_tokens
    assert [r.key for r in recorder.records][-1] == "llm:1"
