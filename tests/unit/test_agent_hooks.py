"""Lifecycle hooks: what ``stop=True`` and ``modified_text`` do from each hook, durably.

Every hook decision is a recorded step: each test runs the agent once, then replays it
over the recorded steps and checks that the replay reaches the same outcome without
calling the model, a tool or a hook again.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pydantic
import pytest

from polos.agents import (
    Agent,
    AgentResult,
    GuardrailResult,
    HookContext,
    HookResult,
    executed_tool,
    tool,
)
from polos.llm import ScriptedProvider, ScriptedReply
from polos.testing import MemoryRecorder, run_once

CALLS: list[str] = []
"""Every tool call made, and every hook call (``event``, or ``event:detail``)."""


@tool
def get_weather(city: str) -> str:
    """Current weather of a city."""
    CALLS.append(f"tool:{city}")
    return f"21 degrees in {city}"


@pytest.fixture(autouse=True)
def _reset() -> None:
    CALLS.clear()


def _hook(label: str, result: HookResult | None = None) -> Any:
    """A hook (of the event ``label`` starts with) that notes each call and returns ``result``."""

    def hook(ctx: HookContext) -> HookResult | None:
        assert ctx.event == label.split(":")[0]
        CALLS.append(label)
        return result

    return hook


def _logging_hooks() -> dict[str, Any]:
    """A note-taking hook on every event."""
    events = ("on_start", "on_agent_step_start", "on_agent_step_end", "on_tool_start")
    return {e: [_hook(e)] for e in (*events, "on_tool_end", "on_end")}


def _agent(
    replies: list[ScriptedReply], hooks: dict[str, Any], **kwargs: Any
) -> tuple[Agent[Any], ScriptedProvider]:
    provider = ScriptedProvider(replies)
    agent: Agent[Any] = Agent(
        id="hooked", provider=provider, model="m", tools=[get_weather], **hooks, **kwargs
    )
    return agent, provider


async def _run_and_replay(
    agent: Agent[Any], provider: ScriptedProvider, text: str = "weather?"
) -> tuple[AgentResult[Any], MemoryRecorder]:
    """Run once, then replay over the recorded steps: the same outcome, nothing called again."""
    payload = agent.payload(text).model_dump(mode="json")
    outcome, recorder = await run_once(agent, payload)
    assert outcome.error is None, outcome.error
    asked, called = len(provider.requests), list(CALLS)
    again, _ = await run_once(agent, payload, history=recorder.records, attempt=2)
    assert again.error is None, again.error
    assert again.result == outcome.result
    assert len(provider.requests) == asked and called == CALLS
    return agent.parse_result(outcome.result), recorder


def _keys(recorder: MemoryRecorder) -> list[str]:
    return [r.key for r in recorder.records]


def _tool_turn(*cities: str) -> ScriptedReply:
    return ScriptedReply(tool_calls=[("get_weather", {"city": c}) for c in cities])


def _every_call_answered(result: AgentResult[Any]) -> None:
    """The conversation stays valid for a provider: each tool call has its result."""
    asked = [c.id for m in result.messages if m.role == "assistant" for c in m.tool_calls]
    answered = [m.tool_call_id for m in result.messages if m.role == "tool"]
    assert asked == answered


# ---------------------------------------------------------------------- stop=True


async def test_on_start_stop__no_model_call_and_on_end_still_runs() -> None:
    hooks = _logging_hooks()
    hooks["on_start"] = [
        _hook("on_start", HookResult(stop=True, reason="over quota")),
        _hook("on_start:never"),  # after a stop, the event's later hooks are not called
    ]
    agent, provider = _agent([ScriptedReply(text="never")], hooks)
    result, recorder = await _run_and_replay(agent, provider)
    assert provider.requests == []
    assert result.stop_reason == "hook" and result.result == "" and result.steps == []
    assert CALLS == ["on_start", "on_end"]
    assert _keys(recorder) == ["hook:on_start:0:0", "hook:on_end:0:0"]
    assert recorder.records[0].output["reason"] == "over quota"
    assert [m.role for m in result.messages] == ["user"]


async def test_on_start_stop_with_modified_text__is_the_answer() -> None:
    stop = HookResult(stop=True, modified_text="You are over your quota.")
    agent, provider = _agent([ScriptedReply(text="never")], {"on_start": _hook("on_start", stop)})
    result, _ = await _run_and_replay(agent, provider)
    assert provider.requests == []
    assert result.result == "You are over your quota." and result.stop_reason == "hook"
    assert [(m.role, m.content) for m in result.messages][-1] == (
        "assistant",
        "You are over your quota.",
    )


async def test_on_start_stop__structured_agent_has_no_result_and_no_repair_call() -> None:
    class Verdict(pydantic.BaseModel):
        valid: bool

    stop = HookResult(stop=True)
    agent, provider = _agent(
        [ScriptedReply(text="never")], {"on_start": _hook("on_start", stop)}, output_schema=Verdict
    )
    result, _ = await _run_and_replay(agent, provider)
    assert provider.requests == [] and result.result is None and result.stop_reason == "hook"

    stop = HookResult(stop=True, modified_text='{"valid": false}')
    agent, provider = _agent(
        [ScriptedReply(text="never")], {"on_start": _hook("on_start", stop)}, output_schema=Verdict
    )
    result, _ = await _run_and_replay(agent, provider)
    assert provider.requests == [] and result.result == Verdict(valid=False)


async def test_on_agent_step_start_stop__no_model_call_for_that_step() -> None:
    def budget(ctx: HookContext) -> HookResult | None:
        CALLS.append(f"on_agent_step_start:{ctx.step}")
        return HookResult(stop=True, reason="budget") if ctx.step == 2 else None

    hooks = _logging_hooks()
    hooks["on_agent_step_start"] = budget
    agent, provider = _agent(
        [
            ScriptedReply(text="let me look", tool_calls=[("get_weather", {"city": "Oslo"})]),
            ScriptedReply(text="never"),
        ],
        hooks,
    )
    result, recorder = await _run_and_replay(agent, provider)
    assert len(provider.requests) == 1  # turn 2's model call was not made, nor a final one
    assert result.stop_reason == "hook" and result.total_steps == 1
    assert result.result == "let me look"  # the model's latest text
    assert CALLS == [
        "on_start",
        "on_agent_step_start:1",
        "on_tool_start",
        "tool:Oslo",
        "on_tool_end",
        "on_agent_step_end",
        "on_agent_step_start:2",
        "on_end",
    ]
    assert "hook:on_agent_step_start:2:0" in _keys(recorder)
    assert "llm:2" not in _keys(recorder) and "llm:final" not in _keys(recorder)
    _every_call_answered(result)


async def test_on_agent_step_start_stop_at_the_first_step__no_model_call_at_all() -> None:
    stop = HookResult(stop=True, modified_text="not today")
    agent, provider = _agent(
        [ScriptedReply(text="never")], {"on_agent_step_start": _hook("on_agent_step_start", stop)}
    )
    result, _ = await _run_and_replay(agent, provider)
    assert provider.requests == [] and result.result == "not today"
    assert result.stop_reason == "hook"


async def test_on_tool_start_stop__one_after_another__no_call_of_the_turn_runs_and_no_model_call() -> (
    None
):
    def veto_paris(ctx: HookContext) -> HookResult | None:
        assert ctx.tool_call is not None
        city = ctx.tool_call.arguments["city"]
        CALLS.append(f"on_tool_start:{city}")
        return HookResult(stop=True, reason="Paris is off limits") if city == "Paris" else None

    hooks = _logging_hooks()
    hooks["on_tool_start"] = veto_paris
    agent, provider = _agent(
        [_tool_turn("Oslo", "Paris", "Rome"), ScriptedReply(text="never")],
        hooks,
        parallel_tool_calls=False,
    )
    result, recorder = await _run_and_replay(agent, provider)
    assert len(provider.requests) == 1
    assert result.stop_reason == "hook" and result.result == ""
    assert [(r.output, r.error) for r in result.tool_results] == [
        ("21 degrees in Oslo", False),
        ("Not run: stopped by a hook: Paris is off limits", True),
        ("Not run: the run was stopped by a hook before this call", True),
    ]
    assert CALLS == [
        "on_start",
        "on_agent_step_start",
        "on_tool_start:Oslo",
        "tool:Oslo",
        "on_tool_end",
        "on_tool_start:Paris",  # vetoed: no tool, no on_tool_end; Rome: not even started
        "on_agent_step_end",
        "on_end",
    ]
    assert not any(k.startswith("tool:") and k.endswith("call_3") for k in _keys(recorder))
    _every_call_answered(result)


async def test_on_tool_start_stop__at_once__the_other_calls_still_run_then_the_run_ends() -> None:
    def veto_paris(ctx: HookContext) -> HookResult | None:
        assert ctx.tool_call is not None
        if ctx.tool_call.arguments["city"] == "Paris":
            return HookResult(stop=True, modified_text="I may not look at Paris.")
        return None

    agent, provider = _agent(
        [_tool_turn("Paris", "Oslo"), ScriptedReply(text="never")], {"on_tool_start": veto_paris}
    )
    result, _ = await _run_and_replay(agent, provider)
    assert len(provider.requests) == 1
    assert CALLS == ["tool:Oslo"]
    assert [r.error for r in result.tool_results] == [True, False]
    assert result.stop_reason == "hook" and result.result == "I may not look at Paris."
    assert result.messages[-1].role == "assistant"
    _every_call_answered(result)


async def test_on_tool_end_stop__the_turn_finishes_then_one_last_call_without_tools() -> None:
    def enough(ctx: HookContext) -> HookResult | None:
        assert ctx.tool_call is not None
        CALLS.append("on_tool_end")
        return HookResult(stop=True) if ctx.tool_call.arguments["city"] == "Oslo" else None

    agent, provider = _agent(
        [_tool_turn("Oslo", "Rome"), ScriptedReply(text="Oslo 21, Rome 21"), ScriptedReply()],
        {"on_tool_end": enough},
        parallel_tool_calls=False,
    )
    result, recorder = await _run_and_replay(agent, provider)
    assert CALLS == ["tool:Oslo", "on_tool_end", "tool:Rome", "on_tool_end"]
    assert len(provider.requests) == 2 and provider.requests[1].tools == []
    assert "llm:final" in _keys(recorder)
    assert result.stop_reason == "hook" and result.result == "Oslo 21, Rome 21"


async def test_on_tool_end_stop_with_modified_text__is_the_answer_without_a_last_call() -> None:
    stop = HookResult(stop=True, modified_text="Done: it is 21 degrees.")
    agent, provider = _agent(
        [_tool_turn("Oslo"), ScriptedReply(text="never")],
        {"on_tool_end": _hook("on_tool_end", stop)},
    )
    result, _ = await _run_and_replay(agent, provider)
    assert len(provider.requests) == 1
    assert result.result == "Done: it is 21 degrees." and result.stop_reason == "hook"
    assert [m.role for m in result.messages] == ["user", "assistant", "tool", "assistant"]


async def test_on_agent_step_end_stop__after_tools__one_last_call_without_tools() -> None:
    stop = HookResult(stop=True)
    agent, provider = _agent(
        [_tool_turn("Oslo"), ScriptedReply(text="21 in Oslo"), ScriptedReply(text="never")],
        {"on_agent_step_end": _hook("on_agent_step_end", stop)},
    )
    result, recorder = await _run_and_replay(agent, provider)
    assert len(provider.requests) == 2 and provider.requests[1].tools == []
    # The last call has its own on_agent_step_end too; its stop changes nothing.
    assert _keys(recorder)[-2:] == ["llm:final", "hook:on_agent_step_end:2:0"]
    assert result.stop_reason == "hook" and result.result == "21 in Oslo"


async def test_on_agent_step_end_stop__without_tools__ends_with_that_answer() -> None:
    stop = HookResult(stop=True, reason="enough")
    agent, provider = _agent(
        [ScriptedReply(text="first"), ScriptedReply(text="never")],
        {"on_agent_step_end": _hook("on_agent_step_end", stop)},
    )
    result, _ = await _run_and_replay(agent, provider)
    assert len(provider.requests) == 1
    assert result.stop_reason == "hook" and result.result == "first"


async def test_on_agent_step_end_stop_with_modified_text__is_the_answer_without_a_last_call() -> (
    None
):
    stop = HookResult(stop=True, modified_text="Stopped here.")
    agent, provider = _agent(
        [_tool_turn("Oslo"), ScriptedReply(text="never")],
        {"on_agent_step_end": _hook("on_agent_step_end", stop)},
    )
    result, _ = await _run_and_replay(agent, provider)
    assert len(provider.requests) == 1
    assert result.result == "Stopped here." and result.steps[0].text == "Stopped here."
    assert result.messages[1].content == "Stopped here." and result.messages[1].tool_calls


async def test_on_end_stop__changes_nothing() -> None:
    agent, provider = _agent(
        [ScriptedReply(text="fine")],
        {"on_end": [_hook("on_end", HookResult(stop=True)), _hook("on_end:second")]},
    )
    result, _ = await _run_and_replay(agent, provider)
    assert result.stop_reason == "completed" and result.result == "fine"
    assert CALLS == ["on_end", "on_end:second"]


# ---------------------------------------------------------------------- modified_text


async def test_on_agent_step_end_modified_text__replaces_the_answer_in_result_and_conversation() -> (
    None
):
    def polish(ctx: HookContext) -> HookResult:
        return HookResult(modified_text=f"[{ctx.step}] {ctx.text}".rstrip())

    agent, provider = _agent(
        [
            ScriptedReply(text="looking", tool_calls=[("get_weather", {"city": "Oslo"})]),
            ScriptedReply(text="21 in Oslo"),
        ],
        {"on_agent_step_end": polish},
    )
    result, _ = await _run_and_replay(agent, provider)
    assert result.result == "[2] 21 in Oslo" and result.text == "[2] 21 in Oslo"
    assert result.stop_reason == "completed"
    assert [s.text for s in result.steps] == ["[1] looking", "[2] 21 in Oslo"]
    assert result.messages[-1].content == "[2] 21 in Oslo"
    # The next model call read the rewritten answer of the turn before.
    assert provider.requests[1].messages[1].content == "[1] looking"


async def test_on_agent_step_end_and_on_end_modified_text__add_up() -> None:
    agent, provider = _agent(
        [ScriptedReply(text="21")],
        {
            "on_agent_step_end": lambda ctx: HookResult(modified_text=f"{ctx.text} degrees"),
            "on_end": lambda ctx: HookResult(modified_text=f"{ctx.text}."),
        },
    )
    result, _ = await _run_and_replay(agent, provider)
    assert result.result == "21 degrees." and result.messages[-1].content == "21 degrees"


# ---------------------------------------------------------------------- the last call (llm:final)


def _step_hook(label: str) -> Any:
    """A step hook that notes ``label:STEP`` (``label:STEP:final`` on the last call)."""

    def hook(ctx: HookContext) -> HookResult | None:
        CALLS.append(f"{label}:{ctx.step}{':final' if ctx.final else ''}")
        if ctx.final and label == "on_agent_step_end":
            # It sees the last answer, at the end of the conversation, as any turn's.
            assert ctx.messages[-1].role == "assistant" and ctx.messages[-1].content == ctx.text
        return None

    return hook


async def test_final_call__step_hooks_run_around_it_with_keys_of_their_own() -> None:
    hooks = _logging_hooks()
    hooks["on_agent_step_start"] = _step_hook("on_agent_step_start")
    hooks["on_agent_step_end"] = _step_hook("on_agent_step_end")
    agent, provider = _agent(
        [_tool_turn("Oslo"), _tool_turn("Rome"), ScriptedReply(text="Oslo 21, Rome 21")],
        hooks,
        max_steps=2,
    )
    result, recorder = await _run_and_replay(agent, provider)
    assert len(provider.requests) == 3 and provider.requests[2].tools == []
    assert result.stop_reason == "max_steps" and result.result == "Oslo 21, Rome 21"
    assert [s.step for s in result.steps] == [1, 2, 3]
    assert CALLS == [
        "on_start",
        "on_agent_step_start:1",
        "on_tool_start",
        "tool:Oslo",
        "on_tool_end",
        "on_agent_step_end:1",
        "on_agent_step_start:2",
        "on_tool_start",
        "tool:Rome",
        "on_tool_end",
        "on_agent_step_end:2",
        "on_agent_step_start:3:final",
        "on_agent_step_end:3:final",
        "on_end",
    ]
    keys = _keys(recorder)
    assert len(keys) == len(set(keys))  # no key reused, so no "#2" occurrence either
    assert keys[-4:] == [
        "hook:on_agent_step_start:3:0",
        "llm:final",
        "hook:on_agent_step_end:3:0",
        "hook:on_end:3:0",
    ]

    # A worker that died right after the last call: the resumed run does not make it
    # again, and calls only the hooks that were not recorded.
    CALLS.clear()
    partial = [r for r in recorder.records if r.key in keys[:-2]]
    payload = agent.payload("weather?").model_dump(mode="json")
    resumed, _ = await run_once(agent, payload, history=partial, attempt=2)
    assert resumed.error is None, resumed.error
    assert len(provider.requests) == 3
    assert CALLS == ["on_agent_step_end:3:final", "on_end"]
    assert agent.parse_result(resumed.result).result == "Oslo 21, Rome 21"


async def test_final_call__on_agent_step_start_stop_skips_it() -> None:
    def budget(ctx: HookContext) -> HookResult | None:
        CALLS.append(f"on_agent_step_start:{ctx.step}")
        return HookResult(stop=True, reason="over budget") if ctx.final else None

    hooks = _logging_hooks()
    hooks["on_agent_step_start"] = budget
    agent, provider = _agent(
        [
            ScriptedReply(text="looking", tool_calls=[("get_weather", {"city": "Oslo"})]),
            ScriptedReply(text="never"),
        ],
        hooks,
        max_steps=1,
    )
    result, recorder = await _run_and_replay(agent, provider)
    assert len(provider.requests) == 1  # no llm:final
    assert "llm:final" not in _keys(recorder)
    assert "hook:on_agent_step_end:2:0" not in _keys(recorder)
    assert result.stop_reason == "hook" and result.result == "looking"  # the latest text
    assert result.total_steps == 1
    assert CALLS[-3:] == ["on_agent_step_end", "on_agent_step_start:2", "on_end"]
    _every_call_answered(result)

    # With a modified_text, that is the answer (the assistant's, in the conversation).
    CALLS.clear()
    stop = HookResult(stop=True, modified_text="Out of budget: Oslo is 21 degrees.")
    agent, provider = _agent(
        [_tool_turn("Oslo"), ScriptedReply(text="never")],
        {"on_agent_step_start": lambda ctx: stop if ctx.final else None},
        stop_conditions=[executed_tool("get_weather")],
    )
    result, _ = await _run_and_replay(agent, provider)
    assert len(provider.requests) == 1
    assert result.stop_reason == "hook"
    assert result.result == "Out of budget: Oslo is 21 degrees."
    assert [m.role for m in result.messages] == ["user", "assistant", "tool", "assistant"]


async def test_final_call__on_agent_step_start_stop__structured_agent_gets_no_repair_call() -> None:
    class Verdict(pydantic.BaseModel):
        valid: bool

    agent, provider = _agent(
        [_tool_turn("Oslo"), ScriptedReply(text='{"valid": true}')],
        {"on_agent_step_start": lambda ctx: HookResult(stop=True) if ctx.final else None},
        output_schema=Verdict,
        max_steps=1,
    )
    result, recorder = await _run_and_replay(agent, provider)
    assert len(provider.requests) == 1 and "llm:repair" not in _keys(recorder)
    assert result.stop_reason == "hook" and result.result is None


async def test_final_call__on_agent_step_end_modified_text_replaces_the_answer() -> None:
    def polish(ctx: HookContext) -> HookResult | None:
        CALLS.append(f"on_agent_step_end:{ctx.step}")
        return HookResult(modified_text=f"{ctx.text} (checked)") if ctx.final else None

    def on_end(ctx: HookContext) -> None:
        CALLS.append(f"on_end:{ctx.text}")

    agent, provider = _agent(
        [_tool_turn("Oslo"), ScriptedReply(text="21 in Oslo")],
        {"on_agent_step_end": polish, "on_end": on_end},
        stop_conditions=[executed_tool("get_weather")],
    )
    result, _ = await _run_and_replay(agent, provider)
    assert len(provider.requests) == 2 and provider.requests[1].tools == []
    assert result.stop_reason == "executed_tool"
    assert result.result == "21 in Oslo (checked)" and result.text == "21 in Oslo (checked)"
    assert result.steps[-1].text == "21 in Oslo (checked)"
    assert (result.messages[-1].role, result.messages[-1].content) == (
        "assistant",
        "21 in Oslo (checked)",
    )
    assert CALLS == [
        "tool:Oslo",
        "on_agent_step_end:1",
        "on_agent_step_end:2",
        "on_end:21 in Oslo (checked)",
    ]


async def test_final_call__on_agent_step_end_stop_changes_nothing_and_later_hooks_still_run() -> (
    None
):
    agent, provider = _agent(
        [_tool_turn("Oslo"), ScriptedReply(text="21 in Oslo")],
        {
            "on_agent_step_end": [
                lambda ctx: HookResult(stop=True, reason="done") if ctx.final else None,
                lambda ctx: HookResult(modified_text=f"{ctx.text}.") if ctx.final else None,
            ]
        },
        max_steps=1,
    )
    result, recorder = await _run_and_replay(agent, provider)
    assert result.stop_reason == "max_steps" and result.result == "21 in Oslo."
    assert "hook:on_agent_step_end:2:1" in _keys(recorder)


async def test_final_call__structured_output_validates_the_rewritten_answer() -> None:
    class Verdict(pydantic.BaseModel):
        valid: bool

    def to_json(ctx: HookContext) -> HookResult | None:
        if not ctx.final:
            return None
        return HookResult(modified_text=json.dumps({"valid": "yes" in ctx.text}))

    agent, provider = _agent(
        [_tool_turn("Oslo"), ScriptedReply(text="yes, it is valid")],
        {"on_agent_step_end": to_json},
        output_schema=Verdict,
        max_steps=1,
    )
    result, recorder = await _run_and_replay(agent, provider)
    assert len(provider.requests) == 2 and "llm:repair" not in _keys(recorder)
    assert result.result == Verdict(valid=True) and result.stop_reason == "max_steps"


async def test_final_call__output_guardrails_check_it_before_on_agent_step_end() -> None:
    def no_numbers(ctx: Any) -> GuardrailResult:
        return GuardrailResult(passed=not any(c.isdigit() for c in ctx.text), reason="numbers")

    def seen(ctx: HookContext) -> None:
        CALLS.append(f"on_agent_step_end:{ctx.step}:{ctx.text}")

    agent, provider = _agent(
        [_tool_turn("Oslo"), ScriptedReply(text="21 in Oslo"), ScriptedReply(text="warm")],
        {"on_agent_step_end": seen},
        guardrails=[no_numbers],
        max_steps=1,
    )
    result, recorder = await _run_and_replay(agent, provider)
    assert result.result == "warm" and result.stop_reason == "max_steps"
    # The refused answer was asked again, still without tools, with the reason.
    assert len(provider.requests) == 3 and provider.requests[2].tools == []
    assert "numbers" in provider.requests[2].messages[-1].content
    assert CALLS == ["tool:Oslo", "on_agent_step_end:1:", "on_agent_step_end:2:warm"]
    assert _keys(recorder)[-5:] == [
        "llm:final",
        "guardrail:2:0",
        "llm:final#2",
        "guardrail:2:0#2",
        "hook:on_agent_step_end:2:0",
    ]


# ---------------------------------------------------------------------- the repair call (llm:repair)


class Forecast(pydantic.BaseModel):
    city: str
    degrees: int


_REPAIRED = '{"city": "Oslo", "degrees": 21}'


async def test_repair__its_answer_is_the_run_text_what_on_end_sees_and_the_last_message() -> None:
    def seen(ctx: HookContext) -> None:
        CALLS.append(f"on_end:{ctx.text}")

    agent, provider = _agent(
        [ScriptedReply(text="It is 21 degrees in Oslo."), ScriptedReply(text=_REPAIRED)],
        {"on_end": seen},
        output_schema=Forecast,
    )
    result, recorder = await _run_and_replay(agent, provider)
    assert result.result == Forecast(city="Oslo", degrees=21)
    assert result.text == _REPAIRED
    assert list(CALLS) == [f"on_end:{_REPAIRED}"]
    assert (result.messages[-1].role, result.messages[-1].content) == ("assistant", _REPAIRED)
    assert "does not match" in result.messages[-2].content
    assert _keys(recorder) == ["llm:1", "llm:repair", "hook:on_end:1:0"]


async def test_repair__output_guardrails_check_and_redact_the_repaired_answer() -> None:
    def redact(ctx: Any) -> GuardrailResult:
        CALLS.append(f"guardrail:{ctx.text}")
        return GuardrailResult(passed=True, modified_text=ctx.text.replace("Oslo", "[city]"))

    def seen(ctx: HookContext) -> None:
        CALLS.append(f"on_end:{ctx.text}")

    agent, provider = _agent(
        [ScriptedReply(text="21 in Oslo"), ScriptedReply(text=_REPAIRED)],
        {"on_end": seen},
        output_schema=Forecast,
        guardrails=[redact],
    )
    result, recorder = await _run_and_replay(agent, provider)
    redacted = _REPAIRED.replace("Oslo", "[city]")
    assert result.result == Forecast(city="[city]", degrees=21)
    assert result.text == redacted
    assert result.messages[-1].content == redacted
    assert list(CALLS) == [
        "guardrail:21 in Oslo",
        f"guardrail:{_REPAIRED}",
        f"on_end:{redacted}",
    ]
    assert _keys(recorder) == [
        "llm:1",
        "guardrail:1:0",
        "llm:repair",
        "guardrail:repair:0",
        "hook:on_end:1:0",
    ]


async def test_repair__a_refused_repaired_answer_is_asked_again_with_the_reason() -> None:
    def no_heat(ctx: Any) -> GuardrailResult:
        CALLS.append("guardrail")
        return GuardrailResult(passed="99" not in ctx.text, reason="implausible")

    agent, provider = _agent(
        [
            ScriptedReply(text="hot"),
            ScriptedReply(text='{"city": "Oslo", "degrees": 99}'),
            ScriptedReply(text=_REPAIRED),
        ],
        {},
        output_schema=Forecast,
        guardrails=[no_heat],
    )
    result, recorder = await _run_and_replay(agent, provider)
    assert result.result == Forecast(city="Oslo", degrees=21) and result.text == _REPAIRED
    # Asked again without tools, with the refused answer and the reason.
    assert provider.requests[2].tools == []
    assert "implausible" in provider.requests[2].messages[-1].content
    assert result.messages[-1].content == _REPAIRED
    assert _keys(recorder) == [
        "llm:1",
        "guardrail:1:0",
        "llm:repair",
        "guardrail:repair:0",
        "llm:repair#2",
        "guardrail:repair:0#2",
    ]


async def test_repair__every_repaired_answer_refused__fails_with_agent_error() -> None:
    agent, _ = _agent(
        [ScriptedReply(text="hot")] + [ScriptedReply(text=_REPAIRED)] * 3,
        {},
        output_schema=Forecast,
        guardrails=[lambda ctx: GuardrailResult(passed="{" not in ctx.text, reason="no")],
        guardrail_max_retries=2,
    )
    outcome, _ = await run_once(agent, agent.payload("weather?").model_dump(mode="json"))
    assert outcome.error is not None and outcome.error.type == "polos.errors.AgentError"
    assert "llm:repair" in outcome.error.message


async def test_repair__session_memory_saves_the_repaired_answer_last() -> None:
    saved: list[list[dict[str, Any]]] = []

    class Sessions:
        async def get(self, session_id: str) -> Any:
            return type("Memory", (), {"summary": None, "messages": [], "version": 0})()

        async def save(
            self, session_id: str, messages: list[dict[str, Any]], summary: str | None = None,
            expected_version: int | None = None,
        ) -> Any:  # fmt: skip
            saved.append(list(messages))
            return type("Memory", (), {"summary": summary, "messages": messages, "version": 1})()

    class Client:
        sessions = Sessions()

    agent, _ = _agent(
        [ScriptedReply(text="21 in Oslo"), ScriptedReply(text=_REPAIRED)],
        {},
        output_schema=Forecast,
        guardrails=[
            lambda ctx: GuardrailResult(passed=True, modified_text=ctx.text.replace("Oslo", "OSLO"))
        ],
    )
    agent.attach(Client())  # type: ignore[arg-type]
    payload = agent.payload("weather?", session_id="s1").model_dump(mode="json")
    outcome, _ = await run_once(agent, payload)
    assert outcome.error is None, outcome.error
    assert saved[-1][-1]["role"] == "assistant"
    assert saved[-1][-1]["content"] == _REPAIRED.replace("Oslo", "OSLO")


# ---------------------------------------------------------------------- parallel tool hooks


async def test_parallel_tool_hooks__keyed_by_call_id__replay_in_another_order_keeps_each_output() -> (
    None
):
    @tool
    async def slow(x: int) -> str:
        """Slow."""
        await asyncio.sleep(0.2)
        CALLS.append("slow")
        return "slow result"

    @tool
    async def fast(x: int) -> str:
        """Fast."""
        CALLS.append("fast")
        return "fast result"

    def check(ctx: HookContext) -> HookResult:
        assert ctx.tool_call is not None
        return HookResult(modified_output=f"{ctx.tool_call.name} checked: {ctx.tool_output}")

    provider = ScriptedProvider(
        [
            ScriptedReply(tool_calls=[("slow", {"x": 1}), ("fast", {"x": 2})]),
            ScriptedReply(text="both done"),
        ]
    )
    agent: Agent[Any] = Agent(
        id="par_hooks", provider=provider, model="m", tools=[slow, fast], on_tool_end=check
    )
    payload = agent.payload("go").model_dump(mode="json")
    outcome, recorder = await run_once(agent, payload)
    assert outcome.error is None, outcome.error
    assert CALLS == ["fast", "slow"]  # the fast call finished (and was checked) first
    ended = [r.key for r in recorder.records if r.key.startswith("hook:on_tool_end:")]
    assert ended == ["hook:on_tool_end:1:call_2:0", "hook:on_tool_end:1:call_1:0"]
    expected = [
        ("slow", "slow checked: slow result"),
        ("fast", "fast checked: fast result"),
    ]
    result = agent.parse_result(outcome.result)
    assert [(r.name, r.output) for r in result.tool_results] == expected

    # On replay the tools do not run: both calls end at once, in asked order (slow first),
    # the other way round. Each still reads its own recorded hook decision.
    CALLS.clear()
    again, _ = await run_once(agent, payload, history=recorder.records, attempt=2)
    assert again.error is None, again.error
    assert CALLS == [] and len(provider.requests) == 2
    replayed = agent.parse_result(again.result)
    assert [(r.name, r.output) for r in replayed.tool_results] == expected
    assert again.result == outcome.result

    # A worker that died before the last model call: the resumed run sends the model
    # each call's own checked output.
    partial = [r for r in recorder.records if r.key != "llm:2"]
    agent._provider = resumed = ScriptedProvider([ScriptedReply(text="both done")])
    resumed_outcome, _ = await run_once(agent, payload, history=partial, attempt=2)
    assert resumed_outcome.result == outcome.result
    tool_messages = [m for m in resumed.requests[0].messages if m.role == "tool"]
    assert [(m.name, m.content) for m in tool_messages] == expected
