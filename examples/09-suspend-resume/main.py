"""Submit two expense claims, find them waiting, approve one and reject the other."""

import asyncio
import time
from datetime import timedelta

from worker import LEDGER, Expense, Outcome

from polos import NotWaitingError, PolosClient


async def wait_until_suspended(client: PolosClient, ids: list[str]) -> dict[str, dict]:
    """Poll the waits list until every execution in ``ids`` is parked at its approval."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        page = await client.list_waits(kind="suspend", workflow_id="expense_approval")
        waiting = {w.execution_id: w.data for w in page.items if w.execution_id in ids}
        if len(waiting) == len(ids):
            return waiting
        await asyncio.sleep(0.1)
    raise SystemExit("the claims never reached their approval step")


async def main() -> None:
    async with PolosClient() as client:
        claims = [
            Expense(employee="sam", amount=740.0, description="Train to Lyon for the audit"),
            Expense(employee="kim", amount=95.5, description="Dinner with a client"),
        ]
        handles = [await client.invoke("expense_approval", claim) for claim in claims]
        ids = [h.id for h in handles]

        # What waits for a human (the CLI: `polos waits --kind suspend`).
        waiting = await wait_until_suspended(client, ids)
        print("waiting for a decision (no worker is busy with them):")
        for execution_id, data in waiting.items():
            notes = "; ".join(data["notes"]) or "no findings"
            print(f"  {execution_id}  {data['employee']}: {data['amount']} EUR ({notes})")

        # A signed, single-use link an approver could open from an e-mail instead.
        link = await client.approval_link(
            ids[0], "approval", approver="maria@example.com", expires_in=timedelta(hours=2)
        )
        print(f"\napproval link for sam's claim: {link.url[:60]}...")

        # Decide (the CLI: `polos resume <id> approval --data '{"approved": true}'`).
        await client.resume(
            ids[0], "approval", {"approved": True}, by="maria", comment="audit trip, fine"
        )
        await client.resume(
            ids[1], "approval", {"approved": False}, by="maria", comment="name the client"
        )
        print("approved sam's claim, rejected kim's")

        # A wait ends once: deciding again changes nothing.
        try:
            await client.resume(ids[0], "approval", {"approved": False}, by="someone else")
            raise SystemExit("a second decision was accepted")
        except NotWaitingError as exc:
            print(f"second decision refused: {exc}")

        outcomes = [Outcome.model_validate(await h.result(timeout=30)) for h in handles]
        print()
        for claim, outcome in zip(claims, outcomes, strict=True):
            print(
                f"{claim.employee}: {outcome.status} by {outcome.decided_by} "
                f"({outcome.comment!r}), payout {outcome.payout_id}"
            )

    # The payout step ran once for the approved claim, never for the rejected one.
    payouts = LEDGER.read_text().splitlines() if LEDGER.exists() else []
    sam, kim = (sum(execution_id in line for line in payouts) for execution_id in ids)
    print(f"payouts made: sam {sam}, kim {kim}")
    if [o.status for o in outcomes] != ["reimbursed", "rejected"]:
        raise SystemExit(f"unexpected outcomes: {outcomes}")
    if (sam, kim) != (1, 0):
        raise SystemExit(f"expected one payout for sam and none for kim: {payouts}")


if __name__ == "__main__":
    asyncio.run(main())
