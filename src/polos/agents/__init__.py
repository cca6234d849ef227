"""Durable AI agents: ``Agent``, ``@tool``, stop conditions, guardrails and hooks.

An agent is a workflow whose steps are model calls and tool calls: it survives a crash
of its worker without repeating a completed call, and waits for a human (tool
approval) without holding a worker.
"""

from ._agent import Agent
from ._agent_tools import AgentTool, AskUser, Handoff, ask_user_tool
from ._control import (
    Guardrail,
    GuardrailContext,
    GuardrailResult,
    HookContext,
    HookResult,
    StopCondition,
    StopContext,
    executed_tool,
    guardrail,
    has_text,
    max_steps,
    max_tokens,
    stop_condition,
)
from ._stream import AgentStream, AgentStreamEvent, stream_topic
from ._tool import Tool, WorkflowTool, tool
from ._types import (
    AgentInput,
    AgentOutput,
    AgentResult,
    AgentRunConfig,
    AgentStep,
    AgentText,
    ToolResult,
)

__all__ = [
    "Agent",
    "AgentInput",
    "AgentOutput",
    "AgentResult",
    "AgentRunConfig",
    "AgentStep",
    "AgentStream",
    "AgentStreamEvent",
    "AgentText",
    "AgentTool",
    "AskUser",
    "Guardrail",
    "GuardrailContext",
    "GuardrailResult",
    "Handoff",
    "HookContext",
    "HookResult",
    "StopCondition",
    "StopContext",
    "Tool",
    "ToolResult",
    "WorkflowTool",
    "ask_user_tool",
    "executed_tool",
    "guardrail",
    "has_text",
    "max_steps",
    "max_tokens",
    "stop_condition",
    "stream_topic",
    "tool",
]
