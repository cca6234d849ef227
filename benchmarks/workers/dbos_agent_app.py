"""The DBOS side of ``agent_bench.py``, in its own process (DBOS keeps global state).

Usage::

    python dbos_agent_app.py DB_URL FAKE_LLM_URL

DB_URL is DBOS's system database (``sqlite:///path.db`` or ``postgresql://...``; its
defaults otherwise, as in ``dbos_app.py``). The process prints ``ready`` once launched,
then answers one JSON line per JSON command read on stdin:

* ``{"cmd": "run", "turns": K, "tag": T}``: one run of ``dbos_agent`` (the agent loop of
  ``agent_shared.py`` as a ``@DBOS.workflow()``, each model call and each tool call a
  ``@DBOS.step()``, same adapter and fake server as the other variants); answers
  ``{"seconds": <perf_counter around the workflow call>, "started": <its start>,
  "stamps": [...], "answer": ...}``;
* ``{"cmd": "pydantic_ai", "turns": K, "tag": T}`` (only when ``pydantic_ai`` is
  installed): the same agent in pydantic-ai with its ``DBOSDurability`` capability, run
  inside a ``@DBOS.workflow()`` (model requests are DBOS steps; the tool function calls
  ``lookup`` as a ``@DBOS.step()``, since pydantic-ai leaves function tools unwrapped);
  answers ``{"seconds": ..., "answer": ...}``;
* ``{"cmd": "quit"}``: exits.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from typing import Any

from agent_shared import (
    LOOKUP,
    RUN_KEY,
    STAMPS,
    agent_loop,
    call_lookup,
    make_provider,
    make_pydantic_ai_agent,
    prompt,
    pydantic_ai_available,
)
from dbos import DBOS, DBOSConfig

from polos.llm import LLMRequest, LLMResponse

FAKE_LLM_URL = sys.argv[2] if len(sys.argv) > 2 else "http://127.0.0.1:9/v1"
PROVIDER = make_provider(FAKE_LLM_URL)


@DBOS.step()
async def llm_step(request: LLMRequest) -> LLMResponse:
    """One model call, checkpointed by DBOS (its output is recorded)."""
    return await PROVIDER.generate(request)


@DBOS.step()
async def tool_step(arguments: dict[str, Any]) -> str:
    """One tool call, checkpointed by DBOS; returns the text the model reads."""
    return await call_lookup(arguments)


@DBOS.workflow()
async def dbos_agent(text: str) -> str:
    """The agent loop with durable steps."""
    return await agent_loop(llm_step, tool_step, text)


@DBOS.step()
async def pydantic_ai_lookup_step(x: int) -> dict[str, int]:
    """The tool's body as a DBOS step (for the pydantic-ai agent)."""
    out: dict[str, int] = await LOOKUP.fn(x)
    return out


async def pydantic_ai_lookup(x: int) -> dict[str, int]:
    """Look a number up."""
    return await pydantic_ai_lookup_step(x)


PYDANTIC_AI_AGENT = (
    make_pydantic_ai_agent(FAKE_LLM_URL, pydantic_ai_lookup, durable=True)
    if pydantic_ai_available()
    else None
)


@DBOS.workflow()
async def pydantic_ai_agent(text: str) -> str:
    """The pydantic-ai agent run inside a DBOS workflow."""
    assert PYDANTIC_AI_AGENT is not None
    result = await PYDANTIC_AI_AGENT.run(text)
    return str(result.output)


def _launch(db_url: str) -> None:
    config: DBOSConfig = {
        "name": "polos-agent-bench",
        "system_database_url": db_url,
        "log_level": "WARNING",
    }
    DBOS(config=config)
    DBOS.launch()


async def run(which: str, turns: int, tag: str) -> dict[str, Any]:
    """One workflow run of ``turns`` turns, timed around the call."""
    workflow = dbos_agent if which == "run" else pydantic_ai_agent
    token = RUN_KEY.set(tag)
    try:
        t0 = time.perf_counter()
        answer = await workflow(prompt(turns, tag))
        seconds = time.perf_counter() - t0
    finally:
        RUN_KEY.reset(token)
    return {
        "seconds": seconds,
        "started": t0,
        "stamps": STAMPS.pop([tag])[tag],
        "answer": answer,
    }


async def amain(db_url: str) -> None:
    """Launch DBOS, then serve commands from stdin until ``quit`` or end of input."""
    _launch(db_url)
    loop = asyncio.get_running_loop()
    try:
        print("ready", flush=True)
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                break
            command = json.loads(line)
            if command["cmd"] == "quit":
                break
            if command["cmd"] not in ("run", "pydantic_ai"):
                raise SystemExit(f"unknown command {command!r}")
            if command["cmd"] == "pydantic_ai" and PYDANTIC_AI_AGENT is None:
                raise SystemExit("pydantic_ai is not installed")
            out = await run(command["cmd"], int(command["turns"]), str(command["tag"]))
            print(json.dumps(out), flush=True)
    finally:
        DBOS.destroy()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(amain(sys.argv[1]))
