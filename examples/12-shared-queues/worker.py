"""Shared queues: two workflows share one concurrency limit, per tenant, with a token budget.

Run it with `python worker.py` (or `polos worker worker.py`), then `python main.py`.
"""

import asyncio
import json
import os
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from pydantic import BaseModel

from polos import PolosClient, Queue, RateLimit, Worker, WorkflowContext, current_step, workflow

# Each model call appends when it started and ended here, so that main.py can check the limits.
LEDGER = Path(os.environ.get("POLOS_EXAMPLE_TMP") or tempfile.gettempdir()) / "12-ledger.jsonl"

# Both workflows below run in this queue and share its limits, across every worker process:
# at most 3 of their executions run at once, and at most 2 for any one tenant.
LLM_QUEUE = Queue("llm", concurrency_limit=3, per_key_limit=2)

# A token budget shared by every run: `acquire` parks the execution (holding no worker and
# no queue slot) when the budget for the last minute is spent, until there is room again.
LLM_TOKENS = RateLimit("llm-tokens", limit=40_000, period=timedelta(minutes=1))

MODEL_SECONDS = 0.5  # how long the pretend model call takes


class Job(BaseModel):
    tenant: str
    text: str


async def call_model(task: str, job: Job) -> str:
    """Stands in for a slow LLM call; logs when it ran."""
    started = time.time()
    await asyncio.sleep(MODEL_SECONDS)
    step = current_step()
    entry = {"execution": step.execution_id, "task": task, "tenant": job.tenant}
    with LEDGER.open("a") as ledger:
        ledger.write(json.dumps({**entry, "start": started, "end": time.time()}) + "\n")
    return f"{task} of {len(job.text.split())} words"


@workflow(queue=LLM_QUEUE)
async def summarize(ctx: WorkflowContext, job: Job) -> str:
    await ctx.step.acquire("llm-tokens", units=len(job.text) // 4 + 500)  # prompt + answer
    return await ctx.step.run("model", call_model, "summary", job)


@workflow(queue=LLM_QUEUE)
async def translate(ctx: WorkflowContext, job: Job) -> str:
    await ctx.step.acquire("llm-tokens", units=len(job.text) // 4 + 500)
    return await ctx.step.run("model", call_model, "translation", job)


client = PolosClient()  # POLOS_API_URL (default http://127.0.0.1:8080), POLOS_API_KEY, ...
worker = Worker(client=client, workflows=[summarize, translate], rate_limits=[LLM_TOKENS])

if __name__ == "__main__":
    asyncio.run(worker.run())
