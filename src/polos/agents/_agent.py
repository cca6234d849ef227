"""``Agent``: a model, a prompt and tools, run as a durable workflow."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any, Generic, TypeVar, cast

import pydantic

from polos.client import PolosClient
from polos.errors import ConfigurationError
from polos.llm import LLMProvider, Message, create_provider
from polos.protocol import run_timeout_ms
from polos.sdk import Queue, RateLimit, RetryPolicy, Workflow, WorkflowContext, queue_option

from ._agent_tools import AgentTool
from ._control import (
    HOOK_EVENTS,
    Guardrail,
    HookFn,
    StopCondition,
    as_guardrails,
    as_hooks,
)
from ._loop import AgentRun
from ._stream import AgentStream
from ._tool import Tool, as_tool
from ._types import AgentInput, AgentOutput, AgentResult, AgentRunConfig, AgentText

OutputT = TypeVar("OutputT")

DEFAULT_MAX_STEPS = 10


def _default_id(provider: str, model: str, system_prompt: str | None, tools: Sequence[Tool]) -> str:
    # Stable across processes, so that the worker and the caller agree without an id.
    material = json.dumps([provider, model, system_prompt, sorted(t.name for t in tools)])
    return f"agent_{hashlib.sha256(material.encode()).hexdigest()[:12]}"


class Agent(Workflow[AgentResult[OutputT]], Generic[OutputT]):
    """An LLM agent that survives crashes: every model and tool call is a recorded step.

    Args:
        id: the agent's workflow id (default: derived from provider, model, prompt and tools).
        provider: ``"openai"``, ``"anthropic"``, ``"ollama"``, ``"groq"``, ``"together"``,
            ``"fireworks"``, ``"vllm"``, ``"openai_compatible"``, or an ``LLMProvider`` object.
        model: the model name.
        system_prompt: instructions sent with every call.
        tools: ``@tool`` functions, workflows, or plain functions (made tools).
        output_schema: a pydantic model the final answer must match (``result`` is that model).
        temperature: sampling temperature passed to the provider.
        max_output_tokens: the most tokens one model call may produce.
        max_steps: at most this many model calls per run (default 10).
        stop_conditions: ``max_steps(n)``, ``max_tokens(n)``, ``executed_tool(...)``,
            ``has_text(...)`` or ``@stop_condition`` functions, checked after each turn
            that called tools.
        guardrails: checks of each answer (functions or instruction strings judged by the
            model); a refused answer is asked again with the reason, up to
            ``guardrail_max_retries`` times.
        input_guardrails: checks of the user's input; a refused input fails the run.
        guardrail_max_retries: how often a refused answer is asked again (default 2).
        on_start: hook(s) run when the run starts (one function or a list), each a
            recorded step; likewise the other hooks.
        on_end: hook(s) run when the run ends.
        on_agent_step_start: hook(s) run before each model call.
        on_agent_step_end: hook(s) run after each model call.
        on_tool_start: hook(s) run before each tool call.
        on_tool_end: hook(s) run after each tool call.
        provider_base_url: the provider's URL (OpenAI-compatible servers, proxies, tests).
        provider_llm_api: OpenAI only: ``"responses"`` (default) or ``"chat_completions"``.
        provider_kwargs: extra keyword arguments for every model call.
        request_rate_limit: a flow-control rate limit (name or ``RateLimit``) taken
            before each model call, one unit per request, so that a provider-wide budget
            holds across every run and worker.
        token_rate_limit: likewise, taking the call's estimated tokens (prompt estimate +
            ``max_output_tokens``, default 1,000).
        memory: with a ``session_id``, load the session's conversation first and save it
            after (``memory_keep_messages`` recent messages are kept; past
            ``memory_token_budget`` estimated tokens, older turns are summarised).
        memory_keep_messages: how many recent messages a session keeps (default 40).
        memory_token_budget: estimated tokens past which older turns are summarised
            (default 8,000).
        parallel_tool_calls: when one answer asks for several calls of plain function
            tools (no approval, not a workflow, agent, handoff or ``ask_user``), run them
            at once, each its own recorded step; results go back to the model in the
            order it asked. ``False`` runs them one after another.
        description: what the agent does (shown in listings and the UI).
        queue: as for ``@workflow``.
        timeout: the run timeout, as for ``@workflow``.
        retry: the workflow retry policy, as for ``@workflow``.
    """

    def __init__(
        self,
        id: str | None = None,
        *,
        provider: str | LLMProvider = "openai",
        model: str,
        system_prompt: str | None = None,
        tools: Sequence[Tool | Workflow[Any] | Callable[..., Any]] = (),
        output_schema: type[OutputT] | None = None,
        temperature: float | None = None,
        max_output_tokens: int | None = None,
        max_steps: int = DEFAULT_MAX_STEPS,
        stop_conditions: Sequence[StopCondition] = (),
        guardrails: Sequence[Guardrail | Callable[..., Any] | str] = (),
        input_guardrails: Sequence[Guardrail | Callable[..., Any] | str] = (),
        guardrail_max_retries: int = 2,
        on_start: HookFn | Sequence[HookFn] | None = None,
        on_end: HookFn | Sequence[HookFn] | None = None,
        on_agent_step_start: HookFn | Sequence[HookFn] | None = None,
        on_agent_step_end: HookFn | Sequence[HookFn] | None = None,
        on_tool_start: HookFn | Sequence[HookFn] | None = None,
        on_tool_end: HookFn | Sequence[HookFn] | None = None,
        provider_base_url: str | None = None,
        provider_llm_api: str | None = None,
        provider_kwargs: dict[str, Any] | None = None,
        request_rate_limit: str | RateLimit | None = None,
        token_rate_limit: str | RateLimit | None = None,
        memory: bool = True,
        memory_keep_messages: int = 40,
        memory_token_budget: int = 8000,
        parallel_tool_calls: bool = True,
        description: str | None = None,
        queue: str | Queue | None = None,
        timeout: float | timedelta | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        if not model:
            raise ConfigurationError("Agent needs a model name (model=...)")
        if max_steps < 1:
            raise ConfigurationError("max_steps must be at least 1")
        if guardrail_max_retries < 0:
            raise ConfigurationError("guardrail_max_retries must be 0 or more")
        schema: object = output_schema  # users may pass anything at run time
        if schema is not None and not (
            isinstance(schema, type) and issubclass(schema, pydantic.BaseModel)
        ):
            raise ConfigurationError("output_schema must be a pydantic BaseModel subclass")
        self.tools = [AgentTool(t) if isinstance(t, Agent) else as_tool(t) for t in tools]
        names = [t.name for t in self.tools]
        if len(set(names)) != len(names):
            raise ConfigurationError(f"two tools of one agent share a name: {sorted(names)}")
        self.provider_name = provider if isinstance(provider, str) else provider.name
        self._provider = None if isinstance(provider, str) else provider
        self.model = model
        self.system_prompt = system_prompt
        self.output_schema = cast("type[pydantic.BaseModel] | None", output_schema)
        self.output_json_schema = (
            self.output_schema.model_json_schema() if self.output_schema is not None else None
        )
        self.output_schema_name = self.output_schema.__name__ if self.output_schema else "output"
        self.temperature = temperature
        self.max_output_tokens = max_output_tokens
        self.max_steps = max_steps
        self.stop_conditions = list(stop_conditions)
        self.guardrails = as_guardrails(guardrails, "output")
        self.input_guardrails = as_guardrails(input_guardrails, "input")
        self.guardrail_max_retries = guardrail_max_retries
        given = {
            "on_start": on_start,
            "on_end": on_end,
            "on_agent_step_start": on_agent_step_start,
            "on_agent_step_end": on_agent_step_end,
            "on_tool_start": on_tool_start,
            "on_tool_end": on_tool_end,
        }
        self.hooks: dict[str, list[HookFn]] = {e: as_hooks(given[e], e) for e in HOOK_EVENTS}
        self.provider_base_url = provider_base_url
        self.provider_llm_api = provider_llm_api
        self.provider_kwargs = dict(provider_kwargs or {})
        if memory_keep_messages < 2 or memory_token_budget < 100:
            raise ConfigurationError("memory_keep_messages >= 2 and memory_token_budget >= 100")
        self.memory = memory
        self.request_rate_limit = request_rate_limit
        self.token_rate_limit = token_rate_limit
        self.memory_keep_messages = memory_keep_messages
        self.memory_token_budget = memory_token_budget
        self.parallel_tool_calls = parallel_tool_calls
        self._client: Any = None
        timeout_ms = run_timeout_ms(timeout, "timeout")

        async def run_agent(ctx: WorkflowContext, payload: AgentInput) -> dict[str, Any]:
            output = await AgentRun(self, ctx, payload).run()
            return output.model_dump(mode="json")

        super().__init__(
            run_agent,
            id=id or _default_id(self.provider_name, model, system_prompt, self.tools),
            description=description or (system_prompt or "")[:200] or None,
            retry=retry,
            options={
                "queue": queue_option(queue),
                "timeout_seconds": timeout_ms / 1000 if timeout_ms is not None else None,
                "agent": {"provider": self.provider_name, "model": model, "tools": names},
            },
            kind="agent",
        )
        # The loop's source is shared by every agent: fold in what makes this one differ.
        material = json.dumps(
            [
                self.fingerprint,
                self.provider_name,
                model,
                system_prompt,
                [t.spec().model_dump() for t in self.tools],
                self.output_json_schema,
            ],
            sort_keys=True,
            default=str,
        )
        self.fingerprint = hashlib.sha256(material.encode()).hexdigest()[:16]

    # ------------------------------------------------------------------ the model

    def llm(self) -> LLMProvider:
        """The provider client (created on first use, in the worker process)."""
        if self._provider is None:
            self._provider = create_provider(
                self.provider_name,
                model_api=self.provider_llm_api,
                base_url=self.provider_base_url,
            )
        return self._provider

    def attach(self, client: Any) -> None:
        """The client the agent uses for session memory (a ``Worker`` attaches its own)."""
        self._client = client

    def api_client(self) -> Any:
        """The attached client, or one configured from the environment (``POLOS_API_URL``...)."""
        if self._client is None:
            self._client = PolosClient()
        return self._client

    # ------------------------------------------------------------------ running it

    def with_input(
        self,
        input: str | Sequence[Message | dict[str, Any]],
        *,
        session_id: str | None = None,
        user_id: str | None = None,
        streaming: bool = False,
        **provider_kwargs: Any,
    ) -> AgentRunConfig:
        """This agent with an input, for ``ctx.step.agent_invoke_and_wait(key, ...)``."""
        return AgentRunConfig(
            self, self.payload(input, session_id, user_id, streaming, provider_kwargs)
        )

    @staticmethod
    def payload(
        input: str | Sequence[Message | dict[str, Any]],
        session_id: str | None = None,
        user_id: str | None = None,
        streaming: bool = False,
        provider_kwargs: dict[str, Any] | None = None,
    ) -> AgentInput:
        """The execution payload for an input (validated here, not in the worker)."""
        value: Any = (
            input
            if isinstance(input, str)
            else [m if isinstance(m, Message) else Message.model_validate(m) for m in input]
        )
        return AgentInput(
            input=value,
            session_id=session_id,
            user_id=user_id,
            streaming=streaming,
            provider_kwargs=dict(provider_kwargs or {}),
        )

    async def run(  # type: ignore[override]
        self,
        client: Any,
        input: str | Sequence[Message | dict[str, Any]],
        *,
        session_id: str | None = None,
        user_id: str | None = None,
        timeout: float | timedelta | None = None,
        **options: Any,
    ) -> AgentResult[OutputT]:
        """Run the agent on a worker and wait for its result.

        Raises:
            WorkflowFailedError: the run failed (a provider error, a refused input...).
            polos.TimeoutError: ``timeout`` passed first.
        """
        payload = self.payload(input, session_id, user_id)
        handle = await client.invoke(self.id, payload.model_dump(mode="json"), **options)
        raw = await handle.result(timeout=timeout)
        return self.parse_result(raw)

    async def stream(
        self,
        client: Any,
        input: str | Sequence[Message | dict[str, Any]],
        *,
        session_id: str | None = None,
        user_id: str | None = None,
        **options: Any,
    ) -> AgentStream[OutputT]:
        """Start a streamed run: iterate the returned stream for text deltas, tool calls and
        tool results as they happen, then ``await stream.result()``.

        ``async for chunk in (await agent.stream(client, "hi")).text_chunks(): ...``
        """
        payload = self.payload(input, session_id, user_id, streaming=True)
        handle = await client.invoke(self.id, payload.model_dump(mode="json"), **options)
        return AgentStream(self, client, handle)

    def parse_result(self, raw: Any) -> AgentResult[OutputT]:
        """The recorded output as an :class:`AgentResult` (``result`` as ``output_schema``)."""
        output = AgentOutput.model_validate(raw)
        result: Any = output.result
        if self.output_schema is not None and result is not None:
            result = self.output_schema.model_validate(result)
        elif isinstance(result, str):
            result = AgentText(result)
        return AgentResult(
            agent_id=output.agent_id,
            execution_id=output.execution_id,
            result=result,
            text=output.text,
            steps=output.steps,
            usage=output.usage,
            stop_reason=output.stop_reason,
            session_id=output.session_id,
            messages=output.messages,
        )

    def __repr__(self) -> str:
        return f"Agent(id={self.id!r}, provider={self.provider_name!r}, model={self.model!r})"
