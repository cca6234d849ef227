"""What an agent run takes and gives back."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from polos.llm import Message, ToolCall, Usage

if TYPE_CHECKING:
    from ._agent import Agent

OutputT = TypeVar("OutputT")


class AgentInput(BaseModel):
    """The payload of an agent execution (what ``agent.with_input(...)`` sends)."""

    model_config = ConfigDict(extra="forbid")

    input: str | list[Message]
    session_id: str | None = None
    user_id: str | None = None
    streaming: bool = False
    provider_kwargs: dict[str, Any] = Field(default_factory=dict)


class ToolResult(BaseModel):
    """One tool call of a run and what it gave back to the model."""

    model_config = ConfigDict(extra="forbid")

    step: int
    call_id: str
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    output: str = ""
    error: bool = False
    """Whether the call failed (or was rejected) and ``output`` is the error given to the model."""


class AgentStep(BaseModel):
    """One turn of the loop: a model call and the tool calls it asked for."""

    model_config = ConfigDict(extra="forbid")

    step: int
    text: str = ""
    reasoning: str | None = None
    tool_calls: list[ToolCall] = Field(default_factory=list)
    tool_results: list[ToolResult] = Field(default_factory=list)
    usage: Usage = Field(default_factory=Usage)


class AgentOutput(BaseModel):
    """The recorded result of an agent execution (JSON on the wire)."""

    model_config = ConfigDict(extra="forbid")

    agent_id: str
    execution_id: str
    result: Any = None
    """The final text, or the ``output_schema`` model as JSON."""
    text: str = ""
    steps: list[AgentStep] = Field(default_factory=list)
    usage: Usage = Field(default_factory=Usage)
    stop_reason: str = "completed"
    """``completed`` (the model answered without tools), ``max_steps``, ``max_tokens``,
    ``executed_tool``, ``has_text``, ``hook``, or a custom stop condition's name."""
    session_id: str | None = None
    messages: list[Message] = Field(default_factory=list)
    """The whole conversation of this run (input, answers, tool calls and results)."""


class AgentText(str):
    """An agent's final answer when it has no ``output_schema``: a plain ``str``.

    When the answer is a JSON object (bare, or in one fenced code block), its fields
    also read as attributes, as in ``validation.result.valid``; names of ``str``
    methods (``count``, ``title``...) stay methods: use ``fields()`` for those. For a
    validated, typed result give the agent an ``output_schema``.
    """

    __slots__ = ()

    def fields(self) -> dict[str, Any] | None:
        """The answer as a JSON object, or ``None`` if it is not one."""
        text = self.strip()
        if text.startswith("```") and text.endswith("```"):
            text = text[3:-3]
            text = text[text.index("\n") + 1 :] if "\n" in text else text
        try:
            value = json.loads(text)
        except ValueError:
            return None
        return value if isinstance(value, dict) else None

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        fields = self.fields()
        if fields is None:
            raise AttributeError(
                f"the agent's answer is text, not a JSON object, so it has no field {name!r} "
                f"(answer: {self[:60]!r}); give the Agent output_schema=YourModel "
                "for a validated result"
            )
        if name not in fields:
            raise AttributeError(
                f"the agent's JSON answer has no field {name!r} (fields: {sorted(fields)})"
            )
        return fields[name]


@dataclass
class AgentResult(Generic[OutputT]):
    """An agent run's outcome, with ``result`` rebuilt as the agent's ``output_schema``."""

    agent_id: str
    execution_id: str
    result: OutputT
    text: str
    steps: list[AgentStep]
    usage: Usage
    stop_reason: str
    session_id: str | None = None
    messages: list[Message] = field(default_factory=list)

    @property
    def tool_results(self) -> list[ToolResult]:
        """Every tool call of the run, in order."""
        return [r for s in self.steps for r in s.tool_results]

    @property
    def total_steps(self) -> int:
        """How many model calls the run made."""
        return len(self.steps)


@dataclass(frozen=True)
class AgentRunConfig:
    """An agent with its input, ready to run in a workflow step
    (``ctx.step.agent_invoke_and_wait(key, agent.with_input(...))``)."""

    agent: Agent[Any]
    payload: AgentInput
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def workflow(self) -> Agent[Any]:
        """The workflow to invoke (the agent itself)."""
        return self.agent
