"""The seed README's workflow code type-checks under ``mypy --strict`` with precise types."""

from __future__ import annotations

from pathlib import Path

from mypy import api

SNIPPET = """
from pydantic import BaseModel
from polos import EventPayload, ResumeData, WorkflowContext, workflow

class Order(BaseModel):
    id: str
    amount: float

class Payment(BaseModel):
    id: str

async def charge_stripe(order: Order) -> Payment:
    return Payment(id=order.id)

def count(n: int) -> int:
    return n

@workflow(trigger_on_event="order/new")
async def process_order(ctx: WorkflowContext, order: Order) -> str:
    decision: ResumeData = await ctx.step.suspend("approval", data={"id": order.id})
    payment = await ctx.step.run("charge", charge_stripe, order)
    n = await ctx.step.run("count", count, 3)
    event: EventPayload = await ctx.step.wait_for_event("pickup", topic=f"pickup/{order.id}")
    reveal_type(payment)
    reveal_type(n)
    return payment.id + str(n) + str(decision.data) + str(event.seq)
"""


def test_seed_style_workflow_is_precisely_typed(tmp_path: Path) -> None:
    source = tmp_path / "seed_workflow.py"
    source.write_text(SNIPPET)
    out, err, _status = api.run(
        ["--strict", "--no-incremental", "--cache-dir", str(tmp_path / "cache"), str(source)]
    )
    assert 'Revealed type is "seed_workflow.Payment"' in out, out + err
    assert 'Revealed type is "int"' in out, out + err
    assert "error:" not in out, out + err
