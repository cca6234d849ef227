"""A currency agent with a hook on every point of its lifecycle."""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

from polos import Agent, HookResult, tool
from polos.agents import HookContext

RATES_TO_EUR = {"EUR": 1.0, "USD": 0.92, "GBP": 1.17, "JPY": 0.0062, "CHF": 1.05}


def hook_log_path() -> Path:
    """Where the hooks write their log (the worker writes, main.py reads)."""
    folder = os.environ.get("POLOS_EXAMPLE_TMP") or os.path.join(
        tempfile.gettempdir(), "polos-example-07"
    )
    os.makedirs(folder, exist_ok=True)
    return Path(folder) / "hooks.log"


def log(ctx: HookContext, detail: str = "") -> None:
    """One line per hook call: when, which run, which event, what it saw."""
    entry = {"at": time.time(), "execution": ctx.execution_id, "event": ctx.event}
    entry.update(step=ctx.step, detail=detail)
    with hook_log_path().open("a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")


@tool
def convert(amount: float, from_currency: str, to_currency: str) -> dict:
    """Convert an amount between currencies (ISO codes such as EUR, USD, JPY)."""
    rate = RATES_TO_EUR[from_currency] / RATES_TO_EUR[to_currency]
    return {"amount": round(amount * rate, 2), "currency": to_currency, "rate": round(rate, 4)}


# Each hook gets a HookContext and may return a HookResult to change something (or to
# stop the run); None means "go on unchanged". Every hook call is a recorded step
# (hook:EVENT:STEP:INDEX), so it runs once per run, not again when the run is replayed.


def on_start(ctx: HookContext) -> HookResult:
    log(ctx, f"input: {ctx.text!r}")
    # modified_input replaces what the user sent: here, whitespace is tidied up.
    return HookResult(modified_input=" ".join(ctx.text.split()))


def on_agent_step_start(ctx: HookContext) -> None:
    log(ctx, f"calling the model with {len(ctx.messages)} messages")


def on_agent_step_end(ctx: HookContext) -> None:
    log(ctx, f"answer: {ctx.text!r}" if ctx.text else "no text: the model called tools")


def on_tool_start(ctx: HookContext) -> HookResult | None:
    assert ctx.tool_call is not None
    arguments = dict(ctx.tool_call.arguments)
    # Models sometimes write "usd" for "USD": normalise before the tool sees it.
    fixed = {
        k: v.strip().upper() if k.endswith("_currency") and isinstance(v, str) else v
        for k, v in arguments.items()
    }
    call = f"{ctx.tool_call.name}({', '.join(f'{k}={v!r}' for k, v in arguments.items())})"
    if fixed == arguments:
        log(ctx, call)
        return None
    changed = {k: v for k, v in fixed.items() if arguments[k] != v}
    log(ctx, f"{call}, fixed: {changed}")
    # modified_arguments replace the model's arguments (they are validated again).
    return HookResult(modified_arguments=fixed)


def on_tool_end(ctx: HookContext) -> None:
    log(ctx, f"{ctx.tool_call.name if ctx.tool_call else '?'} -> {ctx.tool_output}")


def on_end(ctx: HookContext) -> HookResult:
    log(ctx, f"final answer of {len(ctx.text)} characters")
    # modified_text replaces the final answer.
    return HookResult(modified_text=f"{ctx.text}\n(Rates are examples, not live quotes.)")


currency_agent = Agent(
    id="currency_agent",
    provider="openai",
    model="gpt-4o-mini",
    system_prompt="You convert currencies with the convert tool and answer in one sentence.",
    tools=[convert],
    on_start=on_start,
    on_agent_step_start=on_agent_step_start,
    on_agent_step_end=on_agent_step_end,
    on_tool_start=on_tool_start,
    on_tool_end=on_tool_end,
    on_end=on_end,
)
