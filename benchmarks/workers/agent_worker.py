"""The Polos worker of ``agent_bench.py``: ``python agent_worker.py``.

Reads ``POLOS_API_URL`` (set by ``WorkerProcess``) and ``FAKE_LLM_URL`` (the fake
OpenAI server's ``.../v1``). Serves:

* ``bench_agent``: an ``Agent`` whose provider is the OpenAI Chat Completions adapter
  against the fake server (wrapped in ``TimedProvider``) and whose one tool is
  ``lookup`` (``agent_shared.py``). Every model call is an ``llm`` step, every tool call
  a ``tool`` step, as for any agent.
* ``bench_agent_stamps``: returns (and forgets) the ``perf_counter`` stamps this process
  took in the model calls and tool calls of the given executions, so the benchmark can
  tell the time between steps without instrumenting Polos.

With ``AGENT_BENCH_BREAKDOWN=1`` it also stamps, per execution, the start and end of the
attempt (``attempt>``/``attempt<``) and of every request the worker sends the
orchestrator on its WebSocket (``RecordStep>``/``RecordStep<``, ``Complete>``/
``Complete<``), by wrapping ``run_attempt`` and ``Channel.request`` as the worker module
imports them (private names: if they are gone it says so and runs uninstrumented). The
wrappers cost two ``perf_counter`` calls and a closure per request.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from agent_shared import STAMPS, make_agent

import polos
from polos import Agent, PolosClient, Worker, WorkflowContext, workflow

STAMPS.key_of = lambda: polos.current_step().execution_id

bench_agent: Agent[Any] = make_agent(os.environ.get("FAKE_LLM_URL", "http://127.0.0.1:9/v1"))


@workflow(id="bench_agent_stamps")
async def bench_agent_stamps(
    ctx: WorkflowContext, execution_ids: list[str]
) -> dict[str, list[tuple[str, float]]]:
    """The stamps of ``execution_ids`` taken in this process (each list in time order)."""
    return STAMPS.pop(execution_ids)


def _stamp(key: str, label: str, t: float) -> None:
    """Note that ``label`` happened at ``t`` in execution ``key``."""
    STAMPS.runs.setdefault(key, []).append((label, t))


def install_breakdown() -> bool:
    """Wrap the worker's ``run_attempt`` and ``Channel.request`` to stamp them (see above)."""
    try:
        import polos.worker._worker as worker_module

        run_attempt = getattr(worker_module, "run_attempt")  # noqa: B009 - private names
        channel_class = getattr(worker_module, "Channel")  # noqa: B009
        request = channel_class.request
    except (ImportError, AttributeError) as exc:
        print(f"agent_worker: no breakdown ({exc})", file=sys.stderr, flush=True)
        return False

    async def timed_attempt(workflow: Any, given: Any, *args: Any, **kwargs: Any) -> Any:
        _stamp(given.execution_id, "attempt>", time.perf_counter())
        try:
            return await run_attempt(workflow, given, *args, **kwargs)
        finally:
            _stamp(given.execution_id, "attempt<", time.perf_counter())

    async def timed_request(self: Any, build: Callable[[int], Any]) -> Any:
        sent: list[Any] = []

        def keep(req: int) -> Any:
            message = build(req)
            sent.append(message)
            return message

        t0 = time.perf_counter()
        ack = await request(self, keep)
        t1 = time.perf_counter()
        message = sent[0] if sent else None
        key = getattr(message, "execution_id", None)
        if key is not None:
            name = type(message).__name__
            _stamp(key, f"{name}>", t0)
            _stamp(key, f"{name}<", t1)
        return ack

    setattr(worker_module, "run_attempt", timed_attempt)  # noqa: B010
    setattr(channel_class, "request", timed_request)  # noqa: B010
    return True


def main() -> None:
    """Serve the agent until SIGTERM."""
    logging.basicConfig(level=logging.WARNING)
    if os.environ.get("AGENT_BENCH_BREAKDOWN") == "1":
        install_breakdown()
    worker = Worker(client=PolosClient(), agents=[bench_agent], workflows=[bench_agent_stamps])
    asyncio.run(worker.run())


if __name__ == "__main__":
    main()
