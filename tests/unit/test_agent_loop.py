"""The agent loop in memory: model and tool calls are recorded steps, replay repeats none."""

from __future__ import annotations

import asyncio
from typing import Any

import pydantic
import pytest

from polos.agents import (
    Agent,
    GuardrailResult,
    HookResult,
    executed_tool,
    max_tokens,
    tool,
)
from polos.errors import ConfigurationError
from polos.llm import ScriptedProvider, ScriptedReply, Usage
from polos.protocol import StepKind
from polos.sdk import LeaseLost
from polos.testing import MemoryRecorder, run_once

CALLS: list[str] = []


@tool
def get_weather(city: str, unit: str = "celsius") -> dict[str, Any]:
    """Current weather of a city."""
    CALLS.append(city)
    return {"city": city, "temp": 21, "unit": unit}


class Query(pydantic.BaseModel):
    q: str
    limit: int = 5


class Verdict(pydantic.BaseModel):
    valid: bool
    reason: str


def _agent(replies: list[ScriptedReply], **kwargs: Any) -> tuple[Agent[Any], ScriptedProvider]:
    provider = ScriptedProvider(replies)
    agent: Agent[Any] = Agent(
        id="weather", provider=provider, model="m", tools=[get_weather], **kwargs
    )
    return agent, provider


def _payload(agent: Agent[Any], text: str) -> Any:
    return agent.payload(text).model_dump(mode="json")


@pytest.fixture(autouse=True)
def _reset() -> None:
    CALLS.clear()


async def test_tool_call_then_answer__steps_recorded_and_replay_calls_nothing_again() -> None:
    agent, provider = _agent(
        [
            ScriptedReply(
                tool_calls=[("get_weather", {"city": "Paris"})],
                usage=Usage(input_tokens=10, output_tokens=5),
            ),
            ScriptedReply(
                text="21 degrees in Paris", usage=Usage(input_tokens=20, output_tokens=6)
            ),
        ]
    )
    outcome, recorder = await run_once(agent, _payload(agent, "weather in Paris?"))
    assert outcome.error is None, outcome.error
    result = agent.parse_result(outcome.result)
    assert result.result == "21 degrees in Paris" and result.stop_reason == "completed"
    assert result.usage.total_tokens == 41 and result.total_steps == 2
    assert [r.name for r in result.tool_results] == ["get_weather"]
    assert '"temp": 21' in result.tool_results[0].output
    kinds = [(r.key.split(":")[0], r.kind) for r in recorder.records]
    assert kinds == [("llm", StepKind.LLM), ("tool", StepKind.TOOL), ("llm", StepKind.LLM)]
    # The second model call saw the tool's answer, tied to the call id.
    second = provider.requests[1].messages
    assert second[-1].role == "tool" and second[-1].tool_call_id == second[-2].tool_calls[0].id

    # Replay over the recorded steps: no model call, no tool call, same result.
    again, _ = await run_once(
        agent, _payload(agent, "weather in Paris?"), history=recorder.records, attempt=2
    )
    assert again.result == outcome.result
    assert len(provider.requests) == 2 and CALLS == ["Paris"]


async def test_crash_after_the_tool__resume_repeats_neither_the_model_nor_the_tool() -> None:
    agent, _ = _agent(
        [ScriptedReply(tool_calls=[("get_weather", {"city": "Oslo"})]), ScriptedReply(text="cold")]
    )
    # The worker loses the execution once two steps are durable (the first model call and
    # the tool call): the second model call's answer is never recorded.
    first = MemoryRecorder(fence_after=2)
    with pytest.raises(LeaseLost):
        await run_once(agent, _payload(agent, "Oslo?"), recorder=first)
    call_id = first.records[0].output["tool_calls"][0]["id"]
    assert [r.key for r in first.records] == ["llm:1", f"tool:1:{call_id}"]
    # Another worker resumes from the log.
    resumed = ScriptedProvider([ScriptedReply(text="cold")])
    agent._provider = resumed
    outcome, _ = await run_once(agent, _payload(agent, "Oslo?"), history=first.records, attempt=2)
    assert agent.parse_result(outcome.result).result == "cold"
    assert CALLS == ["Oslo"]  # the recorded tool call did not run again
    assert len(resumed.requests) == 1  # only the unrecorded model call is made again


def _rendezvous_tools() -> tuple[Any, Any, list[str]]:
    """Two async tools that each wait for the other to have started: they can only both
    finish if they run at once (one after another, the first one times out)."""
    order: list[str] = []
    started = {"a": asyncio.Event(), "b": asyncio.Event()}

    async def meet(me: str, other: str) -> str:
        order.append(f"start {me}")
        started[me].set()
        try:
            await asyncio.wait_for(started[other].wait(), 1.0)
        except TimeoutError:
            return f"{me} ran alone"
        order.append(f"end {me}")
        return f"{me} met {other}"

    @tool
    async def tool_a(x: int) -> str:
        """A."""
        return await meet("a", "b")

    @tool
    async def tool_b(x: int) -> str:
        """B."""
        return await meet("b", "a")

    return tool_a, tool_b, order


async def test_parallel_tool_calls__run_at_once_answers_in_asked_order_replay_runs_none() -> None:
    tool_a, tool_b, order = _rendezvous_tools()
    provider = ScriptedProvider(
        [
            ScriptedReply(tool_calls=[("tool_b", {"x": 1}), ("tool_a", {"x": 2})]),
            ScriptedReply(text="both done"),
        ]
    )
    agent: Agent[Any] = Agent(id="par", provider=provider, model="m", tools=[tool_a, tool_b])
    outcome, recorder = await run_once(agent, _payload(agent, "go"))
    assert outcome.error is None, outcome.error
    result = agent.parse_result(outcome.result)
    assert [(r.name, r.output) for r in result.tool_results] == [
        ("tool_b", "b met a"),
        ("tool_a", "a met b"),
    ]
    # The model sees the answers in the order it asked, each tied to its call id.
    second = provider.requests[1].messages
    asked = [c.id for c in second[-3].tool_calls]
    assert [(m.role, m.tool_call_id) for m in second[-2:]] == [("tool", i) for i in asked]
    assert sorted(r.key for r in recorder.records if r.kind == StepKind.TOOL) == sorted(
        f"tool:1:{i}" for i in asked
    )
    # Replay: no tool runs again, same result.
    order.clear()
    again, _ = await run_once(agent, _payload(agent, "go"), history=recorder.records, attempt=2)
    assert again.result == outcome.result and order == []


async def test_parallel_tool_calls__off__run_one_after_another() -> None:
    tool_a, tool_b, _ = _rendezvous_tools()
    provider = ScriptedProvider(
        [
            ScriptedReply(tool_calls=[("tool_a", {"x": 1}), ("tool_b", {"x": 2})]),
            ScriptedReply(text="done"),
        ]
    )
    agent: Agent[Any] = Agent(
        id="seq", provider=provider, model="m", tools=[tool_a, tool_b], parallel_tool_calls=False
    )
    outcome, _ = await run_once(agent, _payload(agent, "go"))
    result = agent.parse_result(outcome.result)
    assert [r.output for r in result.tool_results] == ["a ran alone", "b met a"]


async def test_structured_output__validated_with_one_recorded_repair() -> None:
    agent, provider = _agent(
        [
            ScriptedReply(text='{"valid": "maybe"}'),
            ScriptedReply(text='{"valid": true, "reason": "ok"}'),
        ],
        output_schema=Verdict,
    )
    outcome, recorder = await run_once(agent, _payload(agent, "check"))
    result = agent.parse_result(outcome.result)
    assert result.result == Verdict(valid=True, reason="ok")
    assert [r.key for r in recorder.records] == ["llm:1", "llm:repair"]
    assert provider.requests[0].output_schema == Verdict.model_json_schema()
    assert "does not match" in provider.requests[1].messages[-1].content


async def test_structured_output__still_invalid_after_repair_fails_clearly() -> None:
    agent, _ = _agent(
        [ScriptedReply(text="no"), ScriptedReply(text="still no")], output_schema=Verdict
    )
    outcome, _ = await run_once(agent, _payload(agent, "check"))
    assert outcome.error is not None and outcome.error.type == "polos.errors.OutputValidationError"
    assert "Verdict" in outcome.error.message


async def test_unknown_tool_and_failing_tool__errors_go_back_to_the_model() -> None:
    @tool
    def explode() -> str:
        """Always fails."""
        raise RuntimeError("boom")

    provider = ScriptedProvider(
        [
            ScriptedReply(
                tool_calls=[("nope", {}), ("explode", {}), ("get_weather", {"town": "x"})]
            ),
            ScriptedReply(text="sorry"),
        ]
    )
    agent: Agent[Any] = Agent(id="a", provider=provider, model="m", tools=[explode, get_weather])
    outcome, _ = await run_once(agent, _payload(agent, "go"))
    results = agent.parse_result(outcome.result).tool_results
    assert [r.error for r in results] == [True, True, True]
    assert "no tool 'nope'" in results[0].output
    assert "RuntimeError: boom" in results[1].output
    assert "city" in results[2].output  # a missing argument is named
    assert CALLS == []


async def test_stop_conditions__end_the_run_with_a_final_answer_without_tools() -> None:
    loop = [
        ScriptedReply(tool_calls=[("get_weather", {"city": f"c{i}"})], usage=Usage(input_tokens=60))
        for i in range(2)
    ]
    agent, provider = _agent(
        [*loop, ScriptedReply(text="summary")], stop_conditions=[max_tokens(100)]
    )
    outcome, _ = await run_once(agent, _payload(agent, "go"))
    result = agent.parse_result(outcome.result)
    assert result.stop_reason == "max_tokens" and result.text == "summary"
    assert provider.requests[-1].tools == []  # the last call may not call tools
    assert CALLS == ["c0", "c1"]

    CALLS.clear()
    agent, _ = _agent(
        [ScriptedReply(tool_calls=[("get_weather", {"city": "x"})]), ScriptedReply(text="done")],
        stop_conditions=[executed_tool("get_weather")],
    )
    outcome, _ = await run_once(agent, _payload(agent, "go"))
    assert agent.parse_result(outcome.result).stop_reason == "executed_tool"

    agent, _ = _agent(
        [ScriptedReply(tool_calls=[("get_weather", {"city": "x"})])] * 2
        + [ScriptedReply(text="t")],
        max_steps=2,
    )
    outcome, _ = await run_once(agent, _payload(agent, "go"))
    assert agent.parse_result(outcome.result).stop_reason == "max_steps"


async def test_output_guardrail__refusal_re_asks_with_the_reason_and_decisions_are_recorded() -> (
    None
):
    def no_secrets(ctx: Any) -> GuardrailResult:
        return GuardrailResult(passed="secret" not in ctx.text, reason="mentions a secret")

    agent, provider = _agent(
        [ScriptedReply(text="the secret is 42"), ScriptedReply(text="I cannot say")],
        guardrails=[no_secrets],
    )
    outcome, recorder = await run_once(agent, _payload(agent, "tell me"))
    assert agent.parse_result(outcome.result).text == "I cannot say"
    assert "mentions a secret" in provider.requests[1].messages[-1].content
    decisions = [r.output["passed"] for r in recorder.records if r.key.startswith("guardrail:")]
    assert decisions == [False, True]


async def test_input_guardrail__refused_input_fails_the_run() -> None:
    agent, provider = _agent(
        [ScriptedReply(text="x")], input_guardrails=[lambda c: "drop table" not in c.text]
    )
    outcome, _ = await run_once(agent, _payload(agent, "please drop table users"))
    assert outcome.error is not None and outcome.error.type == "polos.errors.AgentError"
    assert provider.requests == []


async def test_hooks__modify_arguments_and_output_and_can_stop_the_run() -> None:
    def on_tool_start(ctx: Any) -> HookResult:
        return HookResult(modified_arguments={"city": "Rome"})

    def on_tool_end(ctx: Any) -> HookResult:
        return HookResult(modified_output=f"[checked] {ctx.tool_output}")

    agent, provider = _agent(
        [ScriptedReply(tool_calls=[("get_weather", {"city": "Paris"})]), ScriptedReply(text="ok")],
        on_tool_start=on_tool_start,
        on_tool_end=[on_tool_end],
    )
    outcome, recorder = await run_once(agent, _payload(agent, "go"))
    assert CALLS == ["Rome"]
    assert provider.requests[1].messages[-1].content.startswith("[checked]")
    assert sum(r.key.startswith("hook:") for r in recorder.records) == 2

    agent, _ = _agent(
        [ScriptedReply(text="first")],
        on_agent_step_end=lambda ctx: HookResult(stop=True, reason="enough"),
    )
    outcome, _ = await run_once(agent, _payload(agent, "go"))
    assert agent.parse_result(outcome.result).stop_reason == "hook"


async def test_tool_approval__parks_and_a_rejection_goes_back_to_the_model() -> None:
    @tool(approval="always")
    def delete_file(path: str) -> str:
        """Delete a file."""
        CALLS.append(path)
        return "deleted"

    provider = ScriptedProvider(
        [
            ScriptedReply(tool_calls=[("delete_file", {"path": "/tmp/x"})]),
            ScriptedReply(text="not deleted"),
        ]
    )
    agent: Agent[Any] = Agent(id="a", provider=provider, model="m", tools=[delete_file])
    outcome, recorder = await run_once(agent, _payload(agent, "delete /tmp/x"))
    assert recorder.parked is not None and recorder.parked.key.startswith("approve:1:")
    assert recorder.parked.spec.data["tool"] == "delete_file"
    # A human rejects: the resume is recorded as the suspend step's output.
    from polos.protocol import StepRecord

    resumed = StepRecord(
        key=recorder.parked.key,
        seq=recorder.parked.seq,
        kind=StepKind.SUSPEND,
        output={"data": {"approved": False, "feedback": "keep it"}},
    )
    outcome, _ = await run_once(
        agent, _payload(agent, "delete /tmp/x"), history=[*recorder.records, resumed], attempt=2
    )
    result = agent.parse_result(outcome.result)
    assert CALLS == [] and "keep it" in result.tool_results[0].output
    assert len(provider.requests) == 2


def test_tool_schema__from_the_signature_and_the_docstring() -> None:
    spec = get_weather.spec()
    assert spec.name == "get_weather" and spec.description == "Current weather of a city."
    assert spec.parameters["required"] == ["city"]
    assert spec.parameters["properties"]["unit"]["default"] == "celsius"

    @tool
    async def search(query: Query) -> list[str]:
        """Search."""
        return [query.q] * query.limit

    assert search.spec().parameters["properties"]["q"]["type"] == "string"
    with pytest.raises(ConfigurationError, match="1-64"):
        tool(name="bad name!")(lambda: None)
    with pytest.raises(ConfigurationError, match="share a name"):
        Agent(provider=ScriptedProvider([]), model="m", tools=[get_weather, get_weather])


def test_agent_id__defaults_to_a_stable_hash_and_the_fingerprint_follows_the_config() -> None:
    a1 = Agent(provider="openai", model="gpt-4o", tools=[get_weather])
    a2 = Agent(provider="openai", model="gpt-4o", tools=[get_weather])
    a3 = Agent(provider="openai", model="gpt-4o-mini", tools=[get_weather])
    assert a1.id == a2.id != a3.id and a1.id.startswith("agent_")
    assert a1.fingerprint == a2.fingerprint != a3.fingerprint
    assert a1.kind == "agent" and a1.spec().options["agent"]["model"] == "gpt-4o"


async def test_provider_errors__auth_fails_at_once_and_a_server_error_is_retried() -> None:
    from polos.errors import LLMAuthenticationError, LLMUnavailableError

    agent, provider = _agent(
        [ScriptedReply(error=LLMAuthenticationError("bad key", provider="openai"))]
    )
    outcome, recorder = await run_once(agent, _payload(agent, "hi"))
    assert outcome.error is not None and outcome.error.type.endswith("LLMAuthenticationError")
    assert len(provider.requests) == 1 and recorder.records[-1].attempts == 1

    agent, provider = _agent(
        [
            ScriptedReply(error=LLMUnavailableError("overloaded", provider="openai")),
            ScriptedReply(text="ok"),
        ]
    )
    agent_steps = agent  # the step retries the call (its backoff is the step's retry policy)
    import polos.agents._loop as loop

    original = loop.LLM_RETRY
    loop.LLM_RETRY = loop.RetryPolicy(max_attempts=3, initial_interval=0.01, jitter=0)
    try:
        outcome, recorder = await run_once(agent_steps, _payload(agent, "hi"))
    finally:
        loop.LLM_RETRY = original
    assert agent.parse_result(outcome.result).text == "ok"
    assert recorder.records[-1].attempts == 2 and len(provider.requests) == 2


async def test_streaming__deltas_tool_calls_and_results_are_emitted_live_not_recorded() -> None:
    agent, _ = _agent(
        [
            ScriptedReply(tool_calls=[("get_weather", {"city": "Rome"})]),
            ScriptedReply(text="sunny in Rome today"),
        ]
    )
    payload = agent.payload("weather?", streaming=True).model_dump(mode="json")
    outcome, recorder = await run_once(agent, payload, execution_id="run-1")
    assert outcome.error is None, outcome.error
    topics = {topic for topic, _ in recorder.emitted}
    assert topics == {"agent/run-1"}
    kinds = [data["type"] for _, data in recorder.emitted]
    assert kinds[0] == "llm_start" and "tool_call" in kinds and "tool_result" in kinds
    assert kinds[-1] == "finish"
    text = "".join(d["text"] for _, d in recorder.emitted if d["type"] == "text_delta")
    assert text == "sunny in Rome today"
    assert all(r.kind != "emit" for r in recorder.records)  # nothing extra in the step log
