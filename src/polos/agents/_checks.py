"""Guardrails and hooks of an agent run: each decision a recorded step.

A base of :class:`~polos.agents._loop.AgentRun`, apart so that the loop module stays about the
loop. Keys: ``guardrail:input:I``, ``guardrail:N:I`` (``N`` the turn, or ``repair``),
``hook:EVENT:N:I`` and, for tool hooks, ``hook:EVENT:N:CALL_ID:I``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pydantic

from polos.errors import AgentError
from polos.llm import LLMRequest, LLMResponse, Message, ToolCall
from polos.sdk import WorkflowContext

from ._control import (
    JUDGE_SCHEMA,
    GuardrailContext,
    GuardrailResult,
    HookContext,
    HookEvent,
    HookResult,
    call_user_fn,
    guardrail_result,
    hook_result,
)
from ._types import AgentInput

if TYPE_CHECKING:
    from ._agent import Agent


class RunChecks:
    """Runs an agent's guardrails and hooks as recorded steps of its execution."""

    agent: Agent[Any]
    ctx: WorkflowContext
    payload: AgentInput
    messages: list[Message]

    async def _check_input(self, text: str) -> None:
        for i, g in enumerate(self.agent.input_guardrails):
            decision = await self._guardrail(f"guardrail:input:{i}", g, "input", text, ())
            if not decision.passed:
                raise AgentError(
                    f"agent {self.agent.id!r}: input refused by guardrail {g.name!r}: {decision.reason}"
                )

    async def _check_output(
        self, where: str, response: LLMResponse
    ) -> GuardrailResult | str | None:
        """None: every guardrail passed; a str: passed with this text instead; else the refusal.

        ``where``: the turn's number, or ``repair`` for the structured-output repair call.
        """
        text, changed = response.text, False
        for i, g in enumerate(self.agent.guardrails):
            key = f"guardrail:{where}:{i}"
            decision = await self._guardrail(key, g, "output", text, response.tool_calls)
            if not decision.passed:
                return decision
            if decision.modified_text is not None:
                text, changed = decision.modified_text, True
        return text if changed else None

    async def _guardrail(
        self, key: str, g: Any, phase: str, text: str, tool_calls: Any
    ) -> GuardrailResult:
        context = GuardrailContext(
            agent_id=self.agent.id,
            execution_id=self.ctx.execution_id,
            phase=phase,  # type: ignore[arg-type]
            text=text,
            tool_calls=tuple(tool_calls),
            session_id=self.payload.session_id,
            user_id=self.payload.user_id,
        )

        async def decide() -> dict[str, Any]:
            if g.fn is not None:
                return guardrail_result(await call_user_fn(g.fn, context), g.name).model_dump()
            return (await self._judge(g.instruction, text)).model_dump()

        raw = await self.ctx.step.run(key, decide)
        return GuardrailResult.model_validate(raw)

    async def _judge(self, instruction: str, text: str) -> GuardrailResult:
        """An instruction guardrail: the agent's own model answers ``{passed, reason}``."""
        request = LLMRequest(
            model=self.agent.model,
            system='You check text against a rule. Answer with JSON {"passed": bool, "reason": str}.',
            messages=[Message(role="user", content=f"Rule: {instruction}\n\nText:\n{text}")],
            output_schema=JUDGE_SCHEMA,
            output_schema_name="guardrail_decision",
        )
        response = await self.agent.llm().generate(request)
        try:
            return GuardrailResult.model_validate_json(response.text)
        except pydantic.ValidationError:
            return GuardrailResult(
                passed=False, reason=f"the judge's answer is not valid: {response.text[:200]}"
            )

    async def _hooks(
        self,
        event: HookEvent,
        *,
        step: int = 0,
        text: str = "",
        tool_call: ToolCall | None = None,
        tool_output: str | None = None,
        final: bool = False,
    ) -> HookResult:
        """Run the hooks of ``event`` in order, each a recorded step; their changes add up.

        A hook that stops the run is the last one called for this event (``on_end`` hooks,
        and ``on_agent_step_end`` hooks of the last call, ``final``, are all called: the
        run is ending anyway, their ``stop`` changes nothing).
        """
        stoppable = event != "on_end" and not (final and event == "on_agent_step_end")
        merged = HookResult()
        # Tool hooks are keyed by their call: calls of one turn may run at once and end in
        # any order, and on replay each must find its own decision, not another call's.
        where = f"{step}:{tool_call.id}" if tool_call is not None else str(step)
        for i, hook in enumerate(self.agent.hooks.get(event, [])):
            context = HookContext(
                event=event,
                agent_id=self.agent.id,
                execution_id=self.ctx.execution_id,
                step=step,
                session_id=self.payload.session_id,
                user_id=self.payload.user_id,
                text=merged.modified_text if merged.modified_text is not None else text,
                tool_call=tool_call,
                tool_output=merged.modified_output
                if merged.modified_output is not None
                else tool_output,
                messages=tuple(self.messages),
                final=final,
            )

            async def call(hook: Any = hook, context: HookContext = context) -> dict[str, Any]:
                return hook_result(await call_user_fn(hook, context), event).model_dump()

            got = HookResult.model_validate(
                await self.ctx.step.run(f"hook:{event}:{where}:{i}", call)
            )
            updates = {k: v for k, v in got.model_dump().items() if v not in (None, False, "")}
            merged = merged.model_copy(update=updates)
            if merged.stop and stoppable:
                break
        return merged
