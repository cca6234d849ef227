"""A worker serving an agent whose model is the test's fake OpenAI server.

Environment:
    POLOS_API_URL: the orchestrator.
    FAKE_LLM_URL: the fake server's OpenAI base URL (``.../v1``).
    SIDE_LOG: file each tool call appends ``lookup <x> start|end <pid>`` to.
    SLOW_LOOKUP: ``x`` whose lookup sleeps 5 s (a window to kill the worker in).
"""

from __future__ import annotations

import asyncio
import os

from polos import Agent, PolosClient, Worker, tool


def _log(line: str) -> None:
    path = os.environ.get("SIDE_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(f"{line} {os.getpid()}\n")


@tool
async def lookup(x: int) -> dict[str, int]:
    """Look a number up."""
    _log(f"lookup {x} start")
    if str(x) == os.environ.get("SLOW_LOOKUP"):
        await asyncio.sleep(5)
    _log(f"lookup {x} end")
    return {"x": x, "square": x * x}


assistant = Agent(
    id="assistant",
    provider="openai",
    provider_llm_api=os.environ.get("FAKE_LLM_API", "chat_completions"),
    provider_base_url=os.environ.get("FAKE_LLM_URL", "http://127.0.0.1:9/v1"),
    model="fake-model",
    system_prompt="You look numbers up.",
    tools=[lookup],
)


if __name__ == "__main__":
    os.environ.setdefault("OPENAI_API_KEY", "test-key")
    asyncio.run(Worker(client=PolosClient(), agents=[assistant]).run())
