"""Start the checkout workflow twice, print the receipts and the recorded step log."""

import asyncio
import uuid
from datetime import UTC, datetime

from worker import LEDGER, Order, Receipt, checkout

from polos import PolosClient, StepRecord


def describe(step: StepRecord) -> str:
    """One line about a recorded step."""
    took = (step.completed_at or 0) - (step.started_at or 0)
    if step.kind == "invoke_wait":
        child = step.output
        return f"child {child['workflow_id']} -> {child['status']}: {child['result']}"
    if step.kind == "sleep":
        return f"slept {took / 1000:.1f} s"
    if step.kind == "now":
        return datetime.fromtimestamp(step.output / 1000, tz=UTC).isoformat()
    return f"{step.output}" + (f"  ({took} ms)" if step.kind == "run" else "")


async def main() -> None:
    async with PolosClient() as client:
        # 1. By workflow id: invoke() returns a handle at once; result() waits for the end.
        #    The idempotency key makes a repeated call return the same execution.
        order = Order(customer="ada", items=["keyboard", "mouse"])
        order_key = f"order-ada-{uuid.uuid4().hex[:8]}"  # e.g. your own order id
        handle = await client.invoke("checkout", order, idempotency_key=order_key)
        raw = await handle.result(timeout=30)  # JSON data (a dict)
        print(f"checkout {handle.id}: total {raw['total']} EUR, payment {raw['payment_id']}")

        # 2. Through the workflow object: the result comes back as the annotated type.
        receipt: Receipt = await checkout.run(
            client, Order(customer="grace", items=["monitor", "cable"], country="DE"), timeout=30
        )
        print(
            f"checkout for grace: {receipt.subtotal} + {receipt.shipping.cost} shipping "
            f"({receipt.shipping.carrier}, {receipt.shipping.days} days) "
            f"- {receipt.discount} discount = {receipt.total} EUR"
        )

        # 3. The step log of the first execution: every step, in the order it was recorded.
        #    (`polos executions show <id>` prints the same from the terminal.)
        execution = await client.get_execution(handle.id)
        steps = await client.list_steps(handle.id)
        print(f"\nexecution {execution.id}: {execution.status.value}, attempt {execution.attempt}")
        for step in steps:
            print(f"  {step.seq}. {step.key:<13} {step.kind.value:<12} {describe(step)}")
        # More than one attempt: the execution parked (holding no worker) while its child ran,
        # then a worker replayed the recorded steps, without running them, and went on.

        # 4. Invoking again with the same idempotency key starts nothing new.
        again = await client.invoke("checkout", order, idempotency_key=order_key)
        same = await again.result(timeout=30)
        print(f"\nsame idempotency key -> same execution: {again.id == handle.id}")

    # The charge step ran once for the execution, however often the workflow was replayed.
    charges = LEDGER.read_text().splitlines() if LEDGER.exists() else []
    ours = [line for line in charges if handle.id in line]
    print(f"charge step runs for {handle.id}: {len(ours)}")
    expected = {"order_ref", "placed_at", "lucky_draw", "price", "price#2", "shipping", "charge"}
    if not expected <= {s.key for s in steps} or same != raw or again.id != handle.id:
        raise SystemExit("the step log or the idempotent invoke is not what it should be")
    if len(ours) != 1:
        raise SystemExit(f"expected exactly one charge for {handle.id}, ledger: {charges}")


if __name__ == "__main__":
    asyncio.run(main())
