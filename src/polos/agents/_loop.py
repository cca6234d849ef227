"""The agent loop: call the model, run the tools it asks for, repeat until it answers.

Durability: every model call is a recorded ``llm`` step (``llm:N``), every tool call a
recorded ``tool`` step (``tool:N:CALL_ID``, the call id coming from the recorded model
answer), every guardrail and hook call a recorded step. A run that crashes, or parks
for a tool approval, replays its recorded steps without calling the model or a tool
again, and goes on from the first step it has not recorded. The conversation is
rebuilt from recorded values only, so it is identical on replay.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pydantic

from polos.errors import (
    AgentError,
    ChildWorkflowError,
    LLMAuthenticationError,
    LLMBadRequestError,
    LLMError,
    LLMRateLimitError,
    LLMUnavailableError,
    OutputValidationError,
    StepExecutionError,
)
from polos.llm import LLMRequest, LLMResponse, Message, ToolCall, Usage
from polos.protocol import StepKind, describe_problems
from polos.sdk import RateLimit, RetryPolicy, WorkflowContext, qualified_name

from . import _memory as memory
from ._agent_tools import Handoff, result_text
from ._checks import RunChecks
from ._control import (
    HookResult,
    StopContext,
)
from ._stream import stream_topic
from ._tool import Tool
from ._types import AgentInput, AgentOutput, AgentResult, AgentStep, ToolResult

if TYPE_CHECKING:
    from ._agent import Agent

LLM_RETRY = RetryPolicy(
    max_attempts=3,
    initial_interval=1.0,
    non_retryable_errors=(LLMAuthenticationError, LLMBadRequestError),
)
"""Step-level retries of a model call, on top of the adapter's own retries (which honour
the provider's retry-after): a failed attempt is never recorded, so a retry is safe."""

_LLM_ERRORS: dict[str, type[LLMError]] = {
    qualified_name(cls): cls
    for cls in (
        LLMError,
        LLMRateLimitError,
        LLMAuthenticationError,
        LLMBadRequestError,
        LLMUnavailableError,
    )
}

_NOT_RUN = "Not run: the run was stopped by a hook before this call"

_REPAIR = (
    "Your answer does not match the required JSON schema: {error}\n"
    "Answer again with only a JSON value that matches the schema."
)


class AgentRun(RunChecks):
    """One execution of an agent (one attempt's worth of state, rebuilt on replay)."""

    def __init__(self, agent: Agent[Any], ctx: WorkflowContext, payload: AgentInput) -> None:
        self.agent = agent
        self.ctx = ctx
        self.payload = payload
        self.tools: dict[str, Tool] = {t.name: t for t in agent.tools}
        self.messages: list[Message] = []
        self.steps: list[AgentStep] = []
        self.usage = Usage()
        self.stop_reason = "completed"
        self.system = agent.system_prompt
        self.summary: str | None = None
        self.memory_version = 0
        self.memory_base = 0
        self.handed_over: AgentResult[Any] | None = None
        self.pending_events: list[dict[str, Any]] = []
        self.vetoed = False
        """A hook stopped the run before something happened: no more model calls."""
        self.tool_vetoes: dict[str, HookResult] = {}
        self.tool_stops: dict[str, HookResult] = {}
        """This turn's stopping ``on_tool_start`` (vetoes) and ``on_tool_end`` decisions, by
        call id: read in asked order, so that calls run at once give the same outcome
        whatever order they finished in."""

    # ------------------------------------------------------------------ the run

    async def run(self) -> AgentOutput:
        """Run the loop to its end and return what is recorded as the execution's result."""
        remember = bool(self.payload.session_id) and self.agent.memory
        if remember:
            await self._load_memory()
        started, text = await self._start()
        if text is not None:
            self.messages.append(Message(role="user", content=text))
        answer = self._vetoed(started) if started.stop else await self._turns()
        result: Any = answer
        if self.agent.output_schema is not None and self.vetoed:
            # No model call after a veto, so no repair call either.
            result = (
                json.loads(answer) if _validate(self.agent.output_schema, answer) is None else None
            )
        elif self.agent.output_schema is not None:
            handed = self.handed_over
            if (
                handed is not None
                and handed.result is not None
                and not isinstance(handed.result, str)
            ):
                answer = result_text(handed)
            answer, result = await self._structured(answer)
        final = await self._hooks("on_end", step=len(self.steps), text=answer)
        if final.modified_text is not None:
            answer = final.modified_text
            if self.agent.output_schema is None:
                result = answer
        if remember:
            await self._save_memory()
        await self._emit({"type": "finish", "text": answer, "stop_reason": self.stop_reason})
        return AgentOutput(
            agent_id=self.agent.id,
            execution_id=self.ctx.execution_id,
            result=result,
            text=answer,
            steps=self.steps,
            usage=self.usage,
            stop_reason=self.stop_reason,
            session_id=self.payload.session_id,
            messages=self.messages,
        )

    async def _start(self) -> tuple[HookResult, str | None]:
        """The input: guardrails and ``on_start`` hooks' decision; the conversation so far,
        and the user's message to add to it (None: already in the conversation)."""
        given = self.payload.input
        if isinstance(given, list):
            self.messages.extend(given)
            text = next((m.content for m in reversed(given) if m.role == "user"), "")
            await self._check_input(text)
            return await self._hooks("on_start", text=text), None
        await self._check_input(given)
        started = await self._hooks("on_start", text=given)
        return started, started.modified_input if started.modified_input is not None else given

    async def _turns(self) -> str:
        """Model calls and tool calls until the model answers or a stop condition holds."""
        n = 0
        while True:
            n += 1
            started = await self._hooks("on_agent_step_start", step=n)
            if started.stop:
                return self._vetoed(started)
            response = await self._answer(n)
            step, at = self._record(n, response)
            self.tool_vetoes, self.tool_stops = {}, {}
            if self._concurrent(response.tool_calls):
                # Each call is its own step, keyed by its call id: replay finds each
                # one whatever order they finished in. Answers go back in asked order.
                done = await asyncio.gather(
                    *(self._tool_call(n, call) for call in response.tool_calls)
                )
                for result in done:
                    step.tool_results.append(self._tool_answer(result))
                await self._flush_events()
            for call in () if step.tool_results else response.tool_calls:
                if self.tool_vetoes:
                    # No call of the turn starts after a veto; each still gets an answer,
                    # so that the conversation stays valid (a session may continue it).
                    result = ToolResult(
                        step=n, call_id=call.id, name=call.name, arguments=dict(call.arguments)
                    )
                    result = _answered(result, _NOT_RUN, True)
                else:
                    result = await self._tool_call(n, call)
                step.tool_results.append(self._tool_answer(result))
                await self._flush_events()
                if self.handed_over is not None:
                    self.stop_reason = "handoff"
                    return self.handed_over.text
            ended = await self._hooks("on_agent_step_end", step=n, text=response.text)
            response = self._rewrite(response, step, at, ended)
            veto = self._first(self.tool_vetoes, response.tool_calls)
            if veto is not None:
                return self._vetoed(veto)
            stop = ended if ended.stop else self._first(self.tool_stops, response.tool_calls)
            if stop is not None:
                self.stop_reason = "hook"
                if ended.stop and ended.modified_text is not None:
                    return response.text
                if stop.modified_text is not None:
                    return self._say(stop.modified_text)
                return await self._final_text(n, response)
            if not response.tool_calls:
                return response.text
            reason = self._stopped()
            if reason is not None:
                self.stop_reason = reason
                return await self._final_text(n, response)

    @staticmethod
    def _first(decisions: dict[str, HookResult], calls: Sequence[ToolCall]) -> HookResult | None:
        """The decision about the first of ``calls`` (in asked order) that has one."""
        return next((decisions[c.id] for c in calls if c.id in decisions), None)

    def _vetoed(self, decision: HookResult) -> str:
        """A hook stopped the run before a model or tool call: the run ends here, with the
        hook's ``modified_text`` as its answer, else the model's latest text."""
        self.stop_reason = "hook"
        self.vetoed = True
        if decision.modified_text is not None:
            return self._say(decision.modified_text)
        return self.steps[-1].text if self.steps else ""

    def _say(self, text: str) -> str:
        """A hook's answer, recorded in the conversation as the assistant's."""
        self.messages.append(Message(role="assistant", content=text))
        return text

    def _concurrent(self, calls: Sequence[ToolCall]) -> bool:
        """Whether these calls may run at once: several, all plain function tools.

        Workflow and agent tools wait for a child, approvals and ``ask_user`` suspend and
        a handoff ends the run: an execution waits at one step at a time, so those go
        one after another.
        """
        if not self.agent.parallel_tool_calls or len(calls) < 2:
            return False
        tools = [self.tools.get(call.name) for call in calls]
        # A tool that takes the context may wait (suspend, sleep) from inside: not at once.
        return all(
            type(tool) is Tool and tool.approval != "always" and not tool.takes_ctx
            for tool in tools
        )

    async def _flush_events(self) -> None:
        for event in self.pending_events:
            await self._emit(event)
        self.pending_events.clear()

    def _stopped(self) -> str | None:
        context = StopContext(self.agent.id, self.steps, self.usage)
        for condition in self.agent.stop_conditions:
            if condition(context):
                return condition.name
        if len(self.steps) >= self.agent.max_steps:
            return "max_steps"
        return None

    async def _final_text(self, n: int, last: LLMResponse) -> str:
        """The run stops after tool calls: one more model call, without tools, to answer.

        That call (``llm:final``) is a turn of its own, numbered ``n + 1``: no turn of the
        loop has that number, so its hook and guardrail steps have keys of their own. Its
        ``on_agent_step_start`` hooks may keep it from being made (the run ends as after
        any such stop); its output guardrails check it; its ``on_agent_step_end`` hooks may
        rewrite it (their ``stop`` changes nothing: it is the last call anyway).
        """
        if not last.tool_calls:
            return last.text
        n += 1
        started = await self._hooks("on_agent_step_start", step=n, final=True)
        if started.stop:
            return self._vetoed(started)
        response = await self._answer(n, final=True)
        step, at = self._record(n, response)
        ended = await self._hooks("on_agent_step_end", step=n, text=response.text, final=True)
        return self._rewrite(response, step, at, ended).text

    def _record(self, n: int, response: LLMResponse) -> tuple[AgentStep, int]:
        """Turn ``n``'s answer in the run's steps, usage and conversation; the step, and
        where the answer is in the conversation."""
        step = AgentStep(
            step=n,
            text=response.text,
            reasoning=response.reasoning,
            tool_calls=response.tool_calls,
            usage=response.usage,
        )
        self.steps.append(step)
        self.usage = self.usage + response.usage
        self.messages.append(response.as_message())
        return step, len(self.messages) - 1

    def _rewrite(
        self, response: LLMResponse, step: AgentStep, at: int, ended: HookResult
    ) -> LLMResponse:
        """The answer as ``on_agent_step_end`` hooks rewrote it: in the conversation and
        the result."""
        if ended.modified_text is None:
            return response
        response = response.model_copy(update={"text": ended.modified_text})
        step.text = response.text
        self.messages[at] = response.as_message()
        return response

    # ------------------------------------------------------------------ session memory

    async def _load_memory(self) -> None:
        """The session's conversation before this run's input (compacted if over budget)."""
        sid = self.payload.session_id
        assert sid is not None
        raw = await self.ctx.step.run("memory:load", memory.load, self.agent.api_client(), sid)
        history = memory.parse_messages(raw.get("messages") or [])
        self.summary, self.memory_version = raw.get("summary"), int(raw.get("version") or 0)
        if memory.estimate_tokens(history, self.summary) > self.agent.memory_token_budget:
            cut = memory.turn_start(history, self.agent.memory_keep_messages)
            if cut > 0:
                prompt = memory.COMPACTION_PROMPT.format(
                    summary=self.summary or "", transcript=memory.transcript(history[:cut])
                )
                request = LLMRequest(
                    model=self.agent.model, messages=[Message(role="user", content=prompt)]
                )
                response = await self._llm("llm:compaction", request)
                self.usage = self.usage + response.usage
                self.summary, history = response.text, history[cut:]
        self.messages = history
        self.memory_base = len(history)
        self.system = memory.with_summary(self.agent.system_prompt, self.summary)

    async def _save_memory(self) -> None:
        sid = self.payload.session_id
        assert sid is not None
        await self.ctx.step.run(
            "memory:save",
            memory.save,
            self.agent.api_client(),
            sid,
            self.memory_version,
            self.memory_base,
            list(self.messages),
            self.summary,
            self.agent.memory_keep_messages,
        )

    # ------------------------------------------------------------------ the model

    def _request(self, *, tools: bool = True) -> LLMRequest:
        a = self.agent
        return LLMRequest(
            model=a.model,
            messages=list(self.messages),
            system=self.system,
            tools=[t.spec() for t in a.tools] if tools else [],
            temperature=a.temperature,
            max_output_tokens=a.max_output_tokens,
            output_schema=a.output_json_schema,
            output_schema_name=a.output_schema_name,
            extra={**a.provider_kwargs, **self.payload.provider_kwargs},
        )

    async def _llm(self, key: str, request: LLMRequest) -> LLMResponse:
        await self._take_rate_limits(key, request)
        provider = self.agent.llm()
        # Streamed only when nothing must check the whole answer before anyone sees it.
        live = self.payload.streaming and not self.agent.guardrails

        async def generate(request: LLMRequest) -> LLMResponse:
            if not live:
                return await provider.generate(request)
            await self._emit({"type": "llm_start", "step": key})
            final: LLMResponse | None = None
            async for event in provider.stream(request):
                if event.type in ("text_delta", "reasoning_delta"):
                    await self._emit({"type": event.type, "step": key, "text": event.text})
                elif event.type == "tool_call" and event.tool_call is not None:
                    call = event.tool_call.model_dump(mode="json")
                    await self._emit({"type": "tool_call", "step": key, **call})
                elif event.type == "done":
                    final = event.response
            if final is None:
                raise LLMUnavailableError("the stream ended without a final response")
            return final

        try:
            response = await self.ctx.step.run_as(
                StepKind.LLM, key, generate, (request,), retry_policy=LLM_RETRY
            )
        except StepExecutionError as exc:
            # Surface the provider's error class (an auth error stays an auth error for
            # whoever waits on the run), the same on replay since it is rebuilt from the log.
            cls = _LLM_ERRORS.get(exc.error_type)
            if cls is None:
                raise
            raise cls(exc.error_message, provider=self.agent.provider_name) from exc
        return (
            response if isinstance(response, LLMResponse) else LLMResponse.model_validate(response)
        )

    async def _emit(self, data: dict[str, Any]) -> None:
        """A live event for whoever streams this run (not recorded)."""
        if self.payload.streaming:
            await self.ctx.emit(stream_topic(self.ctx.execution_id), data)

    async def _take_rate_limits(self, key: str, request: LLMRequest) -> None:
        """Wait (parked) for room in the agent's request and token budgets."""
        a = self.agent
        if a.request_rate_limit is not None:
            await self.ctx.step.acquire(a.request_rate_limit, 1, step_key=f"rate:{key}:requests")
        if a.token_rate_limit is not None:
            units = memory.estimate_tokens(request.messages) + (request.max_output_tokens or 1000)
            if isinstance(a.token_rate_limit, RateLimit):
                units = min(units, a.token_rate_limit.limit)  # more could never be granted
            await self.ctx.step.acquire(a.token_rate_limit, units, step_key=f"rate:{key}:tokens")

    async def _answer(self, n: int, *, final: bool = False) -> LLMResponse:
        """Turn ``n``'s model answer, re-asked (with the reason) while an output guardrail
        refuses it, up to ``guardrail_max_retries`` times.

        ``final``: the last call (``llm:final``), made without tools; a call the model asks
        for anyway cannot run, so only its text is kept (and checked).
        """
        if final:
            return await self._checked("llm:final", str(n), "the last call (llm:final)", False)
        return await self._checked(f"llm:{n}", str(n), f"turn {n}", True)

    async def _checked(self, key: str, where: str, which: str, tools: bool) -> LLMResponse:
        """A model call (step ``key``) whose answer the output guardrails check (steps
        ``guardrail:WHERE:I``), re-asked with the reason while one refuses it; ``which``
        names the call in the error when every answer is refused. Without ``tools``, a
        tool call the model asks for anyway cannot run: only the answer's text is kept."""
        feedback: list[Message] = []
        for _ in range(self.agent.guardrail_max_retries + 1):
            request = self._request(tools=tools)
            request.messages.extend(feedback)
            response = await self._llm(key, request)
            if not tools:
                response = response.model_copy(update={"tool_calls": []})
            refused = await self._check_output(where, response)
            if refused is None:
                return response
            if isinstance(refused, str):
                return response.model_copy(update={"text": refused})
            feedback += [
                response.as_message(),
                Message(
                    role="user", content=f"Your answer was refused: {refused.reason}. Try again."
                ),
            ]
        raise AgentError(
            f"agent {self.agent.id!r}: every answer of {which} was refused by a guardrail "
            f"({self.agent.guardrail_max_retries + 1} tries)"
        )

    # ------------------------------------------------------------------ tools

    async def _tool_call(self, n: int, call: ToolCall) -> ToolResult:
        tool = self.tools.get(call.name)
        arguments = dict(call.arguments)
        result = ToolResult(step=n, call_id=call.id, name=call.name, arguments=arguments)
        if tool is None:
            known = ", ".join(sorted(self.tools)) or "none"
            return _answered(
                result, f"Error: there is no tool {call.name!r} (tools: {known})", True
            )
        started = await self._hooks("on_tool_start", step=n, tool_call=call)
        if started.modified_arguments is not None:
            arguments = result.arguments = started.modified_arguments
        if started.stop:
            self.tool_vetoes[call.id] = started
            why = f": {started.reason}" if started.reason else ""
            return _answered(result, f"Not run: stopped by a hook{why}", True)
        if tool.approval == "always":
            rejection = await self._approval(n, call, arguments)
            if rejection is not None:
                return _answered(result, rejection, True)
        if isinstance(tool, Handoff):
            reason = str(arguments.get("reason", ""))
            target = await tool.hand_over(self.ctx, f"handoff:{n}:{call.id}", self.messages, reason)
            self.handed_over = target
            return _answered(result, result_text(target), False)
        try:
            output, failed = await tool.execute(self.ctx, f"tool:{n}:{call.id}", arguments), False
        except StepExecutionError as exc:
            output, failed = (
                f"Error: {exc.error_type.rsplit('.', 1)[-1]}: {exc.error_message}",
                True,
            )
        except ChildWorkflowError as exc:
            output, failed = f"Error: {exc}", True
        except pydantic.ValidationError as exc:
            output, failed = f"Error: invalid arguments: {exc}", True
        ended = await self._hooks("on_tool_end", step=n, tool_call=call, tool_output=output)
        if ended.modified_output is not None:
            output = ended.modified_output
        if ended.stop:
            self.tool_stops[call.id] = ended
        return _answered(result, output, failed)

    def _tool_answer(self, result: ToolResult) -> ToolResult:
        """Give a call's result to the model (the conversation) and to stream readers."""
        self.pending_events.append({"type": "tool_result", **result.model_dump(mode="json")})
        self.messages.append(
            Message(
                role="tool", content=result.output, tool_call_id=result.call_id, name=result.name
            )
        )
        return result

    async def _approval(self, n: int, call: ToolCall, arguments: dict[str, Any]) -> str | None:
        """Wait (holding no worker) for a human to approve the call; the rejection text if not."""
        decision = await self.ctx.step.suspend(
            f"approve:{n}:{call.id}",
            data={
                "_source": "tool_approval",
                "tool": call.name,
                "arguments": arguments,
                "_form": {
                    "title": f"Approve {call.name}?",
                    "fields": [
                        {"name": "approved", "type": "boolean", "required": True},
                        {"name": "feedback", "type": "textarea", "required": False},
                    ],
                },
            },
        )
        data = decision.data if isinstance(decision.data, dict) else {}
        if data.get("approved") is True:
            return None
        feedback = str(data.get("feedback") or "no reason given")
        return f"The user rejected this tool call: {feedback}"

    # ------------------------------------------------------------------ structured output

    async def _structured(self, answer: str) -> tuple[str, Any]:
        """The final answer and its value, validated against ``output_schema``; one repair
        call if it does not match.

        The repair call (``llm:repair``) is checked by the output guardrails like any
        answer (steps ``guardrail:repair:I``, asked again while one refuses it), and its
        answer, as they left it, replaces the run's: in the conversation (after the repair
        request), as the run's text and as what ``on_end`` hooks see. It is not a turn:
        no step hooks, no entry in the run's steps.
        """
        schema = self.agent.output_schema
        assert schema is not None
        error = _validate(schema, answer)
        if error is None:
            return answer, json.loads(answer) if answer.strip() else None
        self.messages.append(Message(role="user", content=_REPAIR.format(error=error)))
        response = await self._checked(
            "llm:repair", "repair", "the repair call (llm:repair)", False
        )
        self.usage = self.usage + response.usage
        self.messages.append(response.as_message())
        repaired = _validate(schema, response.text)
        if repaired is not None:
            raise OutputValidationError(
                f"agent {self.agent.id!r}: the answer does not match {schema.__name__} "
                f"after one repair: {repaired}",
                raw=response.text,
            )
        return response.text, json.loads(response.text)


def _answered(result: ToolResult, output: str, failed: bool) -> ToolResult:
    result.output, result.error = output, failed
    return result


def _validate(schema: type[pydantic.BaseModel], text: str) -> str | None:
    """None if ``text`` is JSON matching ``schema``; else why not."""
    try:
        schema.model_validate_json(text)
    except pydantic.ValidationError as exc:
        return describe_problems(exc.errors())
    return None
