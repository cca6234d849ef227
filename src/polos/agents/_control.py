"""What steers an agent run: stop conditions, guardrails and lifecycle hooks.

Stop conditions are pure functions of what the run recorded (its steps and usage),
so they give the same answer on replay without being recorded. Guardrails and hooks
may do anything (call a model, write somewhere): each call is a recorded step, so
their decisions are in the step log and replay identically.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from polos.errors import ConfigurationError
from polos.llm import Message, ToolCall, Usage

from ._types import AgentStep

# ---------------------------------------------------------------------- stop conditions


@dataclass(frozen=True)
class StopContext:
    """What a stop condition sees after each turn that called tools."""

    agent_id: str
    steps: Sequence[AgentStep]
    usage: Usage


@dataclass(frozen=True)
class StopCondition:
    """Ends the run when ``check`` says so; ``name`` becomes the run's ``stop_reason``."""

    name: str
    check: Callable[[StopContext], bool]

    def __call__(self, context: StopContext) -> bool:
        return bool(self.check(context))


def max_steps(limit: int) -> StopCondition:
    """Stop after ``limit`` model calls."""
    if limit < 1:
        raise ConfigurationError("max_steps must be at least 1")
    return StopCondition("max_steps", lambda c: len(c.steps) >= limit)


def max_tokens(limit: int) -> StopCondition:
    """Stop once the run has used ``limit`` tokens (input plus output, all calls)."""
    if limit < 1:
        raise ConfigurationError("max_tokens must be at least 1")
    return StopCondition("max_tokens", lambda c: c.usage.total_tokens >= limit)


def executed_tool(*names: str) -> StopCondition:
    """Stop once every one of the named tools has been called at least once."""
    if not names:
        raise ConfigurationError("executed_tool needs at least one tool name")
    wanted = set(names)
    return StopCondition(
        "executed_tool",
        lambda c: wanted <= {call.name for s in c.steps for call in s.tool_calls},
    )


def has_text(*needles: str) -> StopCondition:
    """Stop when the latest answer has text (containing every needle, if given)."""

    def check(c: StopContext) -> bool:
        text = c.steps[-1].text if c.steps else ""
        return bool(text) and all(n in text for n in needles)

    return StopCondition("has_text", check)


def stop_condition(fn: Callable[[StopContext], bool]) -> StopCondition:
    """A custom stop condition (``@stop_condition``). It must only read its context:
    it runs again on replay, unrecorded."""
    return StopCondition(fn.__name__, fn)


# ---------------------------------------------------------------------- guardrails


class GuardrailResult(BaseModel):
    """A guardrail's decision. ``modified_text`` replaces the checked text when it passes."""

    model_config = ConfigDict(extra="forbid")

    passed: bool
    reason: str = ""
    modified_text: str | None = None


@dataclass(frozen=True)
class GuardrailContext:
    """What a guardrail checks: the user's input (``phase="input"``) or a model answer."""

    agent_id: str
    execution_id: str
    phase: Literal["input", "output"]
    text: str
    tool_calls: Sequence[ToolCall] = ()
    session_id: str | None = None
    user_id: str | None = None


GuardrailFn = Callable[[GuardrailContext], Any]


@dataclass(frozen=True)
class Guardrail:
    """A check on input or output: a function, or an instruction judged by the agent's model."""

    name: str
    fn: GuardrailFn | None = None
    instruction: str | None = None
    phase: Literal["input", "output"] = "output"


def guardrail(
    check: GuardrailFn | str,
    *,
    name: str | None = None,
    phase: Literal["input", "output"] = "output",
) -> Guardrail:
    """A guardrail from a function (``GuardrailContext -> GuardrailResult | bool``) or from
    an instruction string (an LLM judge with the agent's own model)."""
    if isinstance(check, str):
        return Guardrail(name or "judge", instruction=check, phase=phase)
    label = name or str(getattr(check, "__name__", "guardrail"))
    return Guardrail(label, fn=check, phase=phase)


def as_guardrails(values: Sequence[Any], phase: Literal["input", "output"]) -> list[Guardrail]:
    """Normalise ``Agent(guardrails=[...])``: functions, strings or Guardrail objects."""
    out = []
    for v in values:
        if isinstance(v, Guardrail):
            out.append(v)
        elif isinstance(v, str) or callable(v):
            out.append(guardrail(v, phase=phase))
        else:
            raise ConfigurationError(
                f"{v!r} is not a guardrail (a function, a string or Guardrail)"
            )
    return out


def guardrail_result(value: Any, name: str) -> GuardrailResult:
    """Read what a guardrail function returned (a result, a bool, or None for "passed")."""
    if isinstance(value, GuardrailResult):
        return value
    if value is None or value is True:
        return GuardrailResult(passed=True)
    if value is False:
        return GuardrailResult(passed=False, reason=f"refused by guardrail {name!r}")
    if isinstance(value, dict):
        return GuardrailResult.model_validate(value)
    raise ConfigurationError(
        f"guardrail {name!r} returned {value!r}: return a GuardrailResult, a bool or None"
    )


# ---------------------------------------------------------------------- hooks

HookEvent = Literal[
    "on_start", "on_end", "on_agent_step_start", "on_agent_step_end", "on_tool_start", "on_tool_end"
]
HOOK_EVENTS: tuple[HookEvent, ...] = (
    "on_start",
    "on_end",
    "on_agent_step_start",
    "on_agent_step_end",
    "on_tool_start",
    "on_tool_end",
)


class HookResult(BaseModel):
    """What a hook decides: go on (optionally changing something) or stop the run.

    * ``on_start``: ``modified_input`` replaces the user's input (a string input);
    * ``on_tool_start``: ``modified_arguments`` replace the call's arguments;
    * ``on_tool_end``: ``modified_output`` replaces what the model reads;
    * ``on_agent_step_end``: ``modified_text`` replaces that model answer, in the
      conversation and, when it is the last one, as the run's result;
    * ``on_end``: ``modified_text`` replaces the run's answer.

    ``stop=True`` ends the run with ``stop_reason="hook"`` (``reason`` is for people: it
    is recorded with the decision, and a tool call that was kept from running gives it
    to the model). The hooks after the stopping one, for the same event, are not called.

    * ``on_start``: no model call at all;
    * ``on_agent_step_start``: no model call for that step, nor after (before the last
      call without tools, ``llm:final``: the run ends without it);
    * ``on_tool_start``: that call does not run (the model is told it was not run), nor
      any later call of the turn (calls already running at once with it finish); no
      model call after;
    * ``on_tool_end``: the turn's other calls still run, then one last model call
      without tools (``llm:final``, as for a stop condition) gives the answer;
    * ``on_agent_step_end``: no more turns; if that answer asked for tools, one last
      model call without tools gives the answer (after that last call, ``llm:final``:
      nothing, as for ``on_end``);
    * ``on_end``: nothing (the run is ending; the hooks after it are still called).

    With ``stop=True``, a ``modified_text`` is the answer the run ends with, without a
    last model call (``on_agent_step_end``'s replaces that model answer in the
    conversation; another hook's is added to it as the assistant's). Without one, a run
    stopped by ``on_start``, ``on_agent_step_start`` or ``on_tool_start`` ends with the
    model's latest text (``""`` before any answer); with an ``output_schema``, ``result``
    is that text if it matches the schema, else ``None`` (no repair call). ``on_end``
    hooks still run after a stop.
    """

    model_config = ConfigDict(extra="forbid")

    stop: bool = False
    reason: str = ""
    modified_input: str | None = None
    modified_arguments: dict[str, Any] | None = None
    modified_output: str | None = None
    modified_text: str | None = None


@dataclass(frozen=True)
class HookContext:
    """What a hook sees."""

    event: HookEvent
    agent_id: str
    execution_id: str
    step: int = 0
    session_id: str | None = None
    user_id: str | None = None
    text: str = ""
    tool_call: ToolCall | None = None
    tool_output: str | None = None
    messages: Sequence[Message] = field(default_factory=tuple)
    final: bool = False
    """``on_agent_step_*`` only: this is the last model call, made without tools after a
    stop condition or a hook's stop (``llm:final``, numbered one after the last turn)."""


HookFn = Callable[[HookContext], HookResult | Awaitable[HookResult | None] | None]


def as_hooks(value: HookFn | Sequence[HookFn] | None, event: str) -> list[HookFn]:
    """Normalise a hook argument (one function or a list) and check each is callable."""
    if value is None:
        return []
    hooks = list(value) if isinstance(value, list | tuple) else [value]
    for hook in hooks:
        if not callable(hook):
            raise ConfigurationError(f"{event} hook {hook!r} is not callable")
    return hooks  # type: ignore[return-value]


async def call_user_fn(fn: Callable[..., Any], *args: Any) -> Any:
    """Call a sync or async user function (a sync one runs in a thread)."""
    target = fn.func if isinstance(fn, functools.partial) else fn
    if inspect.iscoroutinefunction(target):
        return await fn(*args)
    result = await asyncio.to_thread(fn, *args)
    if inspect.isawaitable(result):
        result = await result
    return result


def hook_result(value: Any, event: str) -> HookResult:
    """Read what a hook returned (None means "go on unchanged")."""
    if value is None:
        return HookResult()
    if isinstance(value, HookResult):
        return value
    if isinstance(value, dict):
        return HookResult.model_validate(value)
    raise ConfigurationError(f"{event} hook returned {value!r}: return a HookResult or None")


JUDGE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"passed": {"type": "boolean"}, "reason": {"type": "string"}},
    "required": ["passed", "reason"],
    "additionalProperties": False,
}
