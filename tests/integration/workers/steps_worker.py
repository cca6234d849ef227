"""A user's worker script, as the README shows it: workflows plus ``Worker(...).run()``.

Started as a real process by the integration tests (``python steps_worker.py``) and
imported by them for the ``Workflow`` objects and the pydantic models.

Environment:
    POLOS_API_URL: the orchestrator (read by ``PolosClient``).
    SIDE_LOG: file that every step appends ``<key> start <pid>`` / ``<key> end <pid>`` to.
    SHUTDOWN_GRACE: seconds in-flight executions get on SIGTERM (default 10).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from pydantic import BaseModel, Field

from polos import PolosClient, RetryPolicy, Worker, WorkflowContext, workflow

NO_STEP_RETRY = RetryPolicy(max_attempts=1)


def side_log(line: str, path: str | None = None) -> None:
    """Append one line to the side-effect log (the ground truth of what really ran)."""
    path = path or os.environ.get("SIDE_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()


# ---------------------------------------------------------------------- side effects


class StepsInput(BaseModel):
    count: int = 5
    sleep: float = 0.3
    tag: str = "run"
    log: str | None = None
    """Side log of this execution (``SIDE_LOG`` when unset)."""


async def _side_effect(
    key: str, sleep: float, value: int, log: str | None = None
) -> dict[str, int]:
    pid = os.getpid()
    side_log(f"{key} start {pid}", log)
    await asyncio.sleep(sleep)
    side_log(f"{key} end {pid}", log)
    return {"value": value, "pid": pid}


@workflow(id="five_steps")
async def five_steps(ctx: WorkflowContext, payload: StepsInput) -> dict[str, object]:
    """``count`` steps (five by default) with a side effect and a sleep each."""
    values = []
    for i in range(1, payload.count + 1):
        out = await ctx.step.run(f"s{i}", _side_effect, f"s{i}", payload.sleep, i * 10, payload.log)
        values.append(out["value"])
    return {"tag": payload.tag, "values": values, "total": sum(values)}


# ---------------------------------------------------------------------- typed orders


class Order(BaseModel):
    order_id: str
    quantity: int = Field(gt=0)
    unit_price: float


class OrderResult(BaseModel):
    order_id: str
    total: float
    status: str


def _reserve(order_id: str, quantity: int) -> str:
    side_log(f"reserve {order_id} {os.getpid()}")
    return f"reservation-{order_id}-{quantity}"


def _charge(order_id: str, amount: float) -> float:
    side_log(f"charge {order_id} {os.getpid()}")
    return amount


@workflow(id="process_order")
async def process_order(ctx: WorkflowContext, order: Order) -> OrderResult:
    """Reserve stock, then charge: the pydantic-typed story of the README."""
    await ctx.step.run("reserve", _reserve, order.order_id, order.quantity)
    charged = await ctx.step.run(
        "charge", _charge, order.order_id, round(order.quantity * order.unit_price, 2)
    )
    return OrderResult(order_id=order.order_id, total=charged, status="charged")


# ---------------------------------------------------------------------- failures and retries


@workflow(id="always_fails", retry=RetryPolicy(max_attempts=2, initial_interval=0.1))
async def always_fails(ctx: WorkflowContext, payload: dict) -> None:
    """Raises every time; two attempts, then failed."""
    await ctx.step.run("before", side_log, f"always_fails attempt {ctx.attempt}")
    raise ValueError(f"boom on attempt {ctx.attempt}")


def _flaky(counter_file: str) -> int:
    path = Path(counter_file)
    count = int(path.read_text()) + 1 if path.exists() else 1
    path.write_text(str(count))
    if count <= 2:
        raise RuntimeError(f"flaky failure number {count}")
    return count


@workflow(id="flaky", retry=RetryPolicy(max_attempts=3, initial_interval=0.1))
async def flaky(ctx: WorkflowContext, payload: dict) -> dict[str, int]:
    """Its step fails on the first two workflow attempts, then succeeds."""
    first = await ctx.step.run("first", _side_effect, "first", 0.0, 1)
    calls = await ctx.step.run("flaky", _flaky, payload["counter_file"], retry_policy=NO_STEP_RETRY)
    return {"first": first["value"], "calls": calls}


@workflow(id="greet")
async def greet(ctx: WorkflowContext, payload: dict) -> dict[str, str]:
    """One step; handy for the CLI."""
    text = await ctx.step.run("hello", lambda: f"hello {payload['name']}")
    return {"greeting": text}


client = PolosClient()
worker = Worker(
    client=client,
    workflows=[five_steps, process_order, always_fails, flaky, greet],
    shutdown_grace=float(os.environ.get("SHUTDOWN_GRACE", "10")),
)

if __name__ == "__main__":
    asyncio.run(worker.run())
