"""A workflow that suspends with a declared form and hostile-looking data (approval links).

Started as a real process by tests/integration/test_approval_links.py.
"""

from __future__ import annotations

import asyncio
import os

from polos import PolosClient, RetryPolicy, Worker, WorkflowContext, workflow


@workflow(id="refund_review", retry=RetryPolicy(max_attempts=1))
async def refund_review(ctx: WorkflowContext, payload: dict[str, object]) -> object:
    """Asks for a refund decision through a form; returns what the human sent."""
    decision = await ctx.step.suspend(
        "review",
        data={
            "customer": payload.get("customer", "<script>alert(1)</script>"),
            "amount": 50,
            "lines": [{"sku": "A-1", "qty": 2}],
            "_source": "test",
            "_form": {
                "title": "Refund this order?",
                "fields": [
                    {"name": "approved", "type": "boolean", "required": True},
                    {"name": "amount", "type": "number", "required": True, "label": "Amount"},
                    {"name": "reason", "type": "select", "options": ["damaged", "late", 3]},
                    {"name": "note", "type": "textarea"},
                    {"name": "urgent", "type": "boolean"},
                    {"name": "ignored", "type": "weird"},
                ],
            },
        },
    )
    return {"data": decision.data, "by": decision.resumed_by, "comment": decision.comment}


worker = Worker(
    PolosClient(), workflows=[refund_review], max_concurrent=int(os.environ.get("MAX", "10"))
)

if __name__ == "__main__":
    asyncio.run(worker.run())
