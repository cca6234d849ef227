"""Tools that are more than a function call: another agent, a handoff, a question to a human."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from polos.llm import Message
from polos.sdk import WorkflowContext

from ._tool import Tool, tool_output_text

if TYPE_CHECKING:
    from ._agent import Agent
    from ._types import AgentResult


def _safe_name(text: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "_-" else "_" for c in text)
    return cleaned[:64] or "agent"


def result_text(result: AgentResult[Any]) -> str:
    """What a sub-agent's run gives back: its structured result as JSON, else its text."""
    if result.result is not None and not isinstance(result.result, str):
        value = result.result
        return value.model_dump_json() if hasattr(value, "model_dump_json") else json.dumps(value)
    return result.text


class AgentTool(Tool):
    """Another agent used as a tool: each call is a child execution of that agent (its own
    model and tool calls recorded in its own log), waited for without holding a worker."""

    def __init__(
        self, agent: Agent[Any], *, name: str | None = None, description: str = ""
    ) -> None:
        self.agent = agent

        def ask(input: str) -> str:
            """What to ask the agent."""
            raise NotImplementedError  # never called: execute() invokes the agent

        super().__init__(
            ask,
            name=name or _safe_name(agent.id),
            description=description or agent.description or f"Ask the agent {agent.id}.",
        )

    async def execute(self, ctx: WorkflowContext, key: str, arguments: dict[str, Any]) -> str:
        question = str(self.validate(arguments).model_dump()["input"])
        payload = self.agent.payload(question).model_dump(mode="json")
        result = await ctx.step.invoke_and_wait(key, self.agent, payload)
        return result_text(result)


class Handoff(Tool):
    """Hand the conversation over to another agent, which finishes the run.

    The target gets the whole conversation so far (plus the reason given by the model),
    and its answer becomes this run's answer (``stop_reason="handoff"``).
    """

    def __init__(
        self, agent: Agent[Any], *, name: str | None = None, description: str = ""
    ) -> None:
        self.agent = agent

        def transfer(reason: str) -> str:
            """Why the conversation is handed over."""
            raise NotImplementedError  # never called: the loop calls hand_over()

        super().__init__(
            transfer,
            name=name or _safe_name(f"transfer_to_{agent.id}"),
            description=description
            or f"Hand the conversation over to {agent.id}"
            + (f": {agent.description}" if agent.description else "."),
        )

    async def hand_over(
        self, ctx: WorkflowContext, key: str, messages: Sequence[Message], reason: str
    ) -> AgentResult[Any]:
        """Run the target agent on the conversation; its result."""
        history = [m for m in messages if m.role in ("user", "assistant") and not m.tool_calls]
        note = Message(role="user", content=f"(Handed over to you: {reason})")
        payload = self.agent.payload([*history, note]).model_dump(mode="json")
        result: AgentResult[Any] = await ctx.step.invoke_and_wait(key, self.agent, payload)
        return result


class AskUser(Tool):
    """``ask_user``: the model asks a human a question (with an optional form) and waits,
    holding no worker, until someone answers through the resume API."""

    def __init__(self, *, name: str = "ask_user", description: str = "") -> None:
        def ask_user(question: str, fields: list[dict[str, Any]] | None = None) -> str:
            """Ask the user a question and wait for the answer. ``fields``: optional form
            fields, each ``{"name", "type" (text|textarea|boolean|number|select),
            "label", "options"}``."""
            raise NotImplementedError  # never called: execute() suspends

        super().__init__(ask_user, name=name, description=description or None)

    async def execute(self, ctx: WorkflowContext, key: str, arguments: dict[str, Any]) -> str:
        values = self.validate(arguments).model_dump()
        fields = values.get("fields") or [{"name": "answer", "type": "textarea"}]
        answer = await ctx.step.suspend(
            key.replace("tool:", "ask:", 1),
            data={
                "_source": "ask_user",
                "question": values["question"],
                "_form": {"title": values["question"], "fields": fields},
            },
        )
        return tool_output_text(answer.data)


def ask_user_tool(*, name: str = "ask_user", description: str = "") -> AskUser:
    """The built-in ``ask_user`` tool (answer with ``client.resume(execution_id, key, data)``;
    the wait's data holds the question and the form)."""
    return AskUser(name=name, description=description)
