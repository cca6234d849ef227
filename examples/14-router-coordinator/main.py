"""Send two support tickets; each is routed to a different specialist."""

import asyncio

from polos import PolosClient

TICKETS = [
    ("cus-17", "I was charged twice for my March subscription, can I get a refund?", "billing"),
    ("cus-42", "The app times out every time I upload a 30 MB video.", "tech"),
]


async def main() -> None:
    client = PolosClient()
    routes = []
    for customer_id, question, expected in TICKETS:
        handle = await client.invoke(
            "support_desk", {"customer_id": customer_id, "question": question}
        )
        reply = await handle.result(timeout=30)
        routes.append(reply["route"])
        print(f"Q: {question}")
        print(f"   routed to: {reply['route']} ({reply['reason']})")
        print(f"   tools used: {', '.join(reply['tools_used']) or 'none'}")
        print(f"   answer: {reply['answer']}\n")
        if reply["route"] != expected:
            raise SystemExit(f"expected the {expected} specialist, got {reply['route']}")

    # The coordinator ran each agent as a child execution: list them for the last ticket.
    children = await client.list_executions(parent_id=handle.id)
    steps = ", ".join(f"{c.parent_step_key} -> {c.workflow_id}" for c in reversed(children.items))
    print(f"last ticket's child executions: {steps}")


if __name__ == "__main__":
    asyncio.run(main())
