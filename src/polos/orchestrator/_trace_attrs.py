"""Span attributes read from recorded step outputs: GenAI conventions, waits, guardrails.

Pure functions over JSON values as the step log holds them. The agent loop's step
keys and outputs are a convention (``llm:N`` records a model answer, ``tool:N:CALL_ID``
a tool call's text, ``guardrail:*`` a decision, ``hook:EVENT:*`` a hook result), read
here without importing the agents package (the orchestrator never imports user-code
machinery): a value that does not have the expected shape just yields fewer attributes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from polos.protocol import StepKind, StepRecord, WaitKind

MAX_TEXT = 256
"""Longest text attribute copied from a step output (reasons, messages)."""

WAIT_KINDS: Mapping[StepKind, WaitKind] = {
    StepKind.SUSPEND: WaitKind.SUSPEND,
    StepKind.WAIT_EVENT: WaitKind.EVENT,
    StepKind.SLEEP: WaitKind.SLEEP,
    StepKind.INVOKE_WAIT: WaitKind.CHILD,
    StepKind.ACQUIRE: WaitKind.ACQUIRE,
}
"""The wait each waiting step kind parks on."""

_CALL_PREFIXES = ("tool", "approve", "handoff")
"""Step keys ``PREFIX:N:CALL_ID`` that belong to one tool call of turn N."""

Attributes = dict[str, Any]


def clip(text: str) -> str:
    """``text`` cut to :data:`MAX_TEXT` characters (attributes stay small)."""
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"


def base_key(key: str) -> str:
    """A step key without its occurrence suffix (``llm:1#2`` → ``llm:1``)."""
    head, sep, tail = key.rpartition("#")
    return head if sep and tail.isdigit() else key


def tool_call_of(key: str) -> tuple[str, str, str] | None:
    """``(prefix, turn, call id)`` of a tool-call step key like ``tool:2:call_abc``."""
    parts = base_key(key).split(":", 2)
    if len(parts) == 3 and parts[0] in _CALL_PREFIXES and parts[1].isdigit() and parts[2]:
        return parts[0], parts[1], parts[2]
    return None


def tool_names(steps: Iterable[StepRecord]) -> dict[tuple[str, str], str]:
    """(turn, call id) → tool name, from the tool calls recorded in ``llm:N`` answers."""
    names: dict[tuple[str, str], str] = {}
    for step in steps:
        if step.kind != StepKind.LLM or not isinstance(step.output, dict):
            continue
        turn = base_key(step.key).partition(":")[2]
        for call in _calls(step.output):
            names[(turn, str(call["id"]))] = str(call["name"])
    return names


def _calls(output: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    calls = output.get("tool_calls")
    if not isinstance(calls, list):
        return []
    return [c for c in calls if isinstance(c, dict) and "id" in c and "name" in c]


def _tokens(usage: Any, prefix: str = "gen_ai.usage") -> Attributes:
    """Token counts of a recorded ``usage`` object (zero extras left out)."""
    if not isinstance(usage, dict):
        return {}
    attrs: Attributes = {}
    for field, name, always in (
        ("input_tokens", f"{prefix}.input_tokens", True),
        ("output_tokens", f"{prefix}.output_tokens", True),
        ("cache_read_tokens", "polos.llm.usage.cache_read_tokens", False),
        ("cache_creation_tokens", "polos.llm.usage.cache_creation_tokens", False),
        ("reasoning_tokens", "polos.llm.usage.reasoning_tokens", False),
    ):
        value = usage.get(field)
        if isinstance(value, int) and (always or value):
            attrs[name] = value
    return attrs


def llm_attributes(output: Any) -> Attributes:
    """GenAI attributes of a recorded model answer (an ``LLMResponse`` as JSON)."""
    attrs: Attributes = {"gen_ai.operation.name": "chat"}
    if not isinstance(output, dict):
        return attrs
    # The request is not recorded (only the answer), so the model is the one that answered.
    for field, name in (("model", "gen_ai.response.model"), ("response_id", "gen_ai.response.id")):
        if isinstance(output.get(field), str) and output[field]:
            attrs[name] = output[field]
    if isinstance(output.get("finish_reason"), str):
        attrs["gen_ai.response.finish_reasons"] = [output["finish_reason"]]
    attrs.update(_tokens(output.get("usage")))
    calls = _calls(output)
    if calls:
        # The decision the model made: which tools it asked for, in order.
        attrs["polos.llm.tool_calls"] = [str(c["name"]) for c in calls]
        attrs["polos.llm.tool_call_ids"] = [str(c["id"]) for c in calls]
    if isinstance(output.get("reasoning"), str) and output["reasoning"]:
        attrs["polos.llm.has_reasoning"] = True
    return attrs


def call_attributes(step: StepRecord, names: Mapping[tuple[str, str], str]) -> Attributes:
    """Attributes of a step that belongs to a tool call (run, approval or hand-off)."""
    parsed = tool_call_of(step.key)
    if parsed is None:
        return {}
    prefix, turn, call_id = parsed
    attrs: Attributes = {"gen_ai.tool.call.id": call_id}
    if prefix == "tool":
        attrs["gen_ai.operation.name"] = "execute_tool"
    name = names.get((turn, call_id))
    if name is not None:
        attrs["gen_ai.tool.name"] = name
    return attrs


def decision_attributes(step: StepRecord) -> Attributes:
    """Guardrail decisions and hook results, from ``guardrail:*`` / ``hook:*`` steps."""
    key, output = base_key(step.key), step.output
    if not isinstance(output, dict):
        return {}
    if key.startswith("guardrail:") and isinstance(output.get("passed"), bool):
        attrs: Attributes = {"polos.guardrail.passed": output["passed"]}
        if isinstance(output.get("reason"), str) and output["reason"]:
            attrs["polos.guardrail.reason"] = clip(output["reason"])
        if output.get("modified_text") is not None:
            attrs["polos.guardrail.modified"] = True
        return attrs
    if key.startswith("hook:"):
        attrs = {"polos.hook.event": key.split(":")[1]}
        if output.get("stop") is True:
            attrs["polos.hook.stop"] = True
        return attrs
    return {}


def agent_attributes(result: Any) -> Attributes:
    """For an agent execution's recorded result: the agent and its total token usage."""
    if not isinstance(result, dict) or not isinstance(result.get("agent_id"), str):
        return {}
    attrs: Attributes = {"gen_ai.agent.name": result["agent_id"]}
    attrs.update(_tokens(result.get("usage")))
    if isinstance(result.get("stop_reason"), str):
        attrs["polos.agent.stop_reason"] = result["stop_reason"]
    return attrs
