"""What every variant of ``agent_bench.py`` shares: the fake model's script, the tool, the
timed provider and the minimal agent loop.

* The fake model (``respond``) reads the number of turns K from the user's message
  (``"turns=K"``): while the conversation holds fewer than K - 1 tool results it asks for
  one ``lookup`` call, then it answers with text. So a run makes K model calls and K - 1
  tool calls, whatever the client, and a repeated request gets the same answer.
* ``LOOKUP`` is the one tool (a ``polos.tool``: the Polos agent, the baseline and DBOS call
  the same object, with the same argument validation); it returns at once.
* ``TimedProvider`` wraps the real adapter
  (``create_provider("openai", model_api="chat_completions", ...)``) and stamps
  ``time.perf_counter()`` when a model call starts and ends; ``lookup`` stamps its start
  and end too. The stamps of one run give the time spent *between* the model call and
  the tool call (where a durable engine records the step) without touching the engine.
* ``agent_loop`` is the loop of ``polos.agents`` reduced to what this agent uses (one
  request per turn with the conversation so far, the tool's output as JSON text): the
  no-durability baseline runs it with plain calls, the DBOS variant with each model call
  and each tool call a ``@DBOS.step()``.
"""

from __future__ import annotations

import contextvars
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from polos import Agent, tool
from polos.agents import Tool
from polos.agents._tool import tool_output_text
from polos.llm import LLMProvider, LLMRequest, LLMResponse, Message, StreamEvent, create_provider
from polos.testing import FakeReply, FakeRequest

MODEL = "fake-model"
SYSTEM_PROMPT = "You look numbers up with the lookup tool, then answer."
AGENT_ID = "bench_agent"
MAX_TURNS = 100
_TURNS = re.compile(r"turns=(\d+)")


def prompt(turns: int, tag: str = "") -> str:
    """The user's message of a run of ``turns`` turns (``tag`` makes runs tell apart)."""
    return f"turns={turns} {tag}".strip()


def respond(request: FakeRequest) -> FakeReply:
    """The fake model: one ``lookup`` call per turn until the last, which answers in text."""
    user = next((text for role, text in request.messages if role == "user"), "")
    match = _TURNS.search(user)
    turns = int(match.group(1)) if match else 1
    done = request.tool_results
    if done < turns - 1:
        return FakeReply(tool_calls=[("lookup", {"x": done + 1})], usage=(30, 5))
    return FakeReply(f"looked up {done} numbers", usage=(50, 4))


# ---------------------------------------------------------------------- stamps


class Stamps:
    """``(label, time.perf_counter())`` pairs per run, kept in this process's memory.

    The run a stamp belongs to is ``RUN_KEY`` when set (baseline, DBOS), else the
    ``key_of`` function's answer (the Polos worker: the execution id of the current step).
    """

    def __init__(self) -> None:
        self.runs: dict[str, list[tuple[str, float]]] = {}
        self.key_of: Callable[[], str] = lambda: "unknown"

    def stamp(self, label: str) -> None:
        """Note that ``label`` happens now in the current run."""
        now = time.perf_counter()
        key = RUN_KEY.get() or self.key_of()
        self.runs.setdefault(key, []).append((label, now))

    def pop(self, keys: list[str]) -> dict[str, list[tuple[str, float]]]:
        """The stamps of ``keys`` (forgotten here)."""
        return {k: self.runs.pop(k, []) for k in keys}


RUN_KEY: contextvars.ContextVar[str | None] = contextvars.ContextVar("bench_run_key", default=None)
STAMPS = Stamps()


class TimedProvider:
    """An ``LLMProvider`` that stamps the start and end of every model call of ``inner``."""

    def __init__(self, inner: LLMProvider) -> None:
        self.inner = inner
        self.name = inner.name

    async def generate(self, request: LLMRequest) -> LLMResponse:
        """The inner provider's answer, between two stamps."""
        STAMPS.stamp("llm>")
        try:
            return await self.inner.generate(request)
        finally:
            STAMPS.stamp("llm<")

    def stream(self, request: LLMRequest) -> AsyncIterator[StreamEvent]:
        """Not used by the benchmark (the agent does not stream)."""
        return self.inner.stream(request)


def make_provider(base_url: str) -> TimedProvider:
    """The adapter every variant uses: OpenAI Chat Completions against the fake server."""
    inner = create_provider("openai", model_api="chat_completions", base_url=base_url, api_key="x")
    return TimedProvider(inner)


@tool
async def lookup(x: int) -> dict[str, int]:
    """Look a number up."""
    STAMPS.stamp("tool>")
    out = {"x": x, "square": x * x}
    STAMPS.stamp("tool<")
    return out


LOOKUP: Tool = lookup


async def call_lookup(arguments: dict[str, Any]) -> str:
    """A tool call as the Polos loop makes it: validate, call, the output as model text."""
    return tool_output_text(await LOOKUP.call(None, arguments))


def make_agent(base_url: str) -> Agent[Any]:
    """The Polos agent: the same adapter, prompt and tool as every other variant."""
    return Agent(
        id=AGENT_ID,
        provider=make_provider(base_url),
        model=MODEL,
        system_prompt=SYSTEM_PROMPT,
        tools=[LOOKUP],
        max_steps=MAX_TURNS,
    )


def pydantic_ai_available() -> bool:
    """Whether ``pydantic_ai`` (``pip install 'pydantic-ai-slim[openai]'``) can be imported."""
    import importlib.util

    return importlib.util.find_spec("pydantic_ai") is not None


def make_pydantic_ai_agent(
    base_url: str, tool_fn: Callable[..., Any] | None = None, durable: bool = False
) -> Any:
    """The same agent in pydantic-ai: its own OpenAI Chat Completions model class (the
    ``openai`` client underneath) against the fake server, the same prompt and tool.

    ``durable``: with the ``DBOSDurability`` capability (model requests become DBOS
    steps when the run is inside a ``@DBOS.workflow()``); ``tool_fn`` replaces the tool
    function (the DBOS app passes one that runs ``lookup`` as a ``@DBOS.step()``).
    """
    from pydantic_ai import Agent as PydanticAgent
    from pydantic_ai import Tool as PydanticTool
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    model = OpenAIChatModel(MODEL, provider=OpenAIProvider(base_url=base_url, api_key="x"))
    capabilities: list[Any] = []
    if durable:
        from pydantic_ai.durable_exec.dbos import DBOSDurability

        capabilities.append(DBOSDurability())
    return PydanticAgent(
        model,
        name="bench_pydantic_ai",
        system_prompt=SYSTEM_PROMPT,
        tools=[PydanticTool(tool_fn or LOOKUP.fn, name=LOOKUP.name)],
        capabilities=capabilities,
    )


# ---------------------------------------------------------------------- the loop


async def agent_loop(
    llm: Callable[[LLMRequest], Awaitable[LLMResponse]],
    call_tool: Callable[[dict[str, Any]], Awaitable[str]],
    text: str,
) -> str:
    """Model call, tool calls, repeat until the model answers (``polos.agents``' loop, minus
    guardrails, hooks and stop conditions, which this agent does not have)."""
    messages = [Message(role="user", content=text)]
    tools = [LOOKUP.spec()]
    for _ in range(MAX_TURNS):
        request = LLMRequest(
            model=MODEL, messages=list(messages), system=SYSTEM_PROMPT, tools=tools
        )
        response = await llm(request)
        messages.append(response.as_message())
        if not response.tool_calls:
            return response.text
        for call in response.tool_calls:
            if call.name != LOOKUP.name:
                raise RuntimeError(f"the fake model asked for an unknown tool {call.name!r}")
            output = await call_tool(dict(call.arguments))
            messages.append(
                Message(role="tool", content=output, tool_call_id=call.id, name=call.name)
            )
    raise RuntimeError(f"no answer after {MAX_TURNS} turns")
