"""Human in the loop: an expense claim waits, holding no worker, until someone decides.

Run it with `python worker.py` (or `polos worker worker.py`), then `python main.py`.
"""

import asyncio
import os
import tempfile
from datetime import timedelta
from pathlib import Path

from pydantic import BaseModel

from polos import PolosClient, WaitTimeoutError, Worker, WorkflowContext, current_step, workflow

# Side effects are appended to this file, so that main.py can show that each ran once.
LEDGER = Path(os.environ.get("POLOS_EXAMPLE_TMP") or tempfile.gettempdir()) / "09-ledger.txt"


class Expense(BaseModel):
    employee: str
    amount: float
    description: str


class Outcome(BaseModel):
    status: str  # "reimbursed", "rejected" or "expired"
    decided_by: str | None = None
    comment: str | None = None
    payout_id: str | None = None


def check_policy(expense: Expense) -> list[str]:
    """Automatic checks; their findings are shown to the approver."""
    notes = []
    if expense.amount > 500:
        notes.append("over the 500 EUR self-approval limit")
    if "client" in expense.description.lower():
        notes.append("client entertainment: needs the client's name")
    return notes


def pay_out(expense: Expense) -> str:
    key = current_step().idempotency_key  # pass to the bank API: a re-run cannot pay twice
    with LEDGER.open("a") as ledger:
        ledger.write(f"payout {key} {expense.employee} {expense.amount:.2f}\n")
    return f"payout_{key.split(':')[0][-8:]}"


@workflow
async def expense_approval(ctx: WorkflowContext, expense: Expense) -> Outcome:
    """Check a claim, wait for a manager's decision, then pay it out (exactly once)."""
    notes = await ctx.step.run("check_policy", check_policy, expense)

    # The execution parks here: no coroutine, no worker slot, for as long as it takes.
    # `data` is stored with the wait, so whoever decides can see what they decide on;
    # `_form` describes the form shown by the UI's approvals inbox and by approval links.
    try:
        decision = await ctx.step.suspend(
            "approval",
            data={
                "employee": expense.employee,
                "amount": expense.amount,
                "description": expense.description,
                "notes": notes,
                "_form": {
                    "title": f"Reimburse {expense.amount:.2f} EUR to {expense.employee}?",
                    "fields": [{"name": "approved", "type": "boolean", "required": True}],
                },
            },
            timeout=timedelta(days=7),
        )
    except WaitTimeoutError:
        return Outcome(status="expired")

    # decision.data is what the resume call sent; resumed_by and comment are the audit trail.
    if not decision.data.get("approved"):
        return Outcome(status="rejected", decided_by=decision.resumed_by, comment=decision.comment)

    payout_id = await ctx.step.run("pay_out", pay_out, expense)
    return Outcome(
        status="reimbursed",
        decided_by=decision.resumed_by,
        comment=decision.comment,
        payout_id=payout_id,
    )


client = PolosClient()  # POLOS_API_URL (default http://127.0.0.1:8080), POLOS_API_KEY, ...
worker = Worker(client=client, workflows=[expense_approval])

if __name__ == "__main__":
    asyncio.run(worker.run())
