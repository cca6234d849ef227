"""Index documents with durable running totals; read the state mid-run; carry it over."""

import asyncio
import time

from worker import LEDGER, Batch, Document, Progress, Summary

from polos import PolosClient

FIRST = [
    Document(name="intro.md", text="Polos records every step before moving on."),
    Document(name="waits.md", text="A suspended workflow holds no worker while it waits."),
    Document(name="state.md", text="State is a pydantic model saved with each step."),
    Document(name="faq.md", text="Yes."),
]
SECOND = [
    Document(name="limits.md", text="Queues cap how many executions run at once."),
    Document(
        name="agents.md",
        text="An agent is a workflow: each model call and each tool "
        "call is a recorded step, replayed after a crash instead of being made again.",
    ),
]


async def main() -> None:
    async with PolosClient() as client:
        # 1. Index four documents; the workflow pauses for a review after two.
        handle = await client.invoke("index_documents", Batch(documents=FIRST, review_after=2))
        deadline = time.monotonic() + 20
        while handle.id not in {
            w.execution_id
            for w in (await client.list_waits(kind="suspend", workflow_id="index_documents")).items
        }:
            if time.monotonic() > deadline:
                raise SystemExit("the workflow never reached its review")
            await asyncio.sleep(0.1)

        # While it waits, its state is in the database (the worker holds nothing).
        waiting = Progress.model_validate((await client.get_execution(handle.id)).state)
        print(f"waiting for review: indexed {waiting.indexed}, {waiting.words} words so far")

        await client.resume(handle.id, "review", {"ok": True}, by="lee")
        first = Summary.model_validate(await handle.result(timeout=30))
        final = (await client.get_execution(handle.id)).state
        print(
            f"first batch (attempt {first.attempt}): {first.documents} documents, "
            f"{first.words} words, longest {first.longest}, reviewed by {first.reviewed_by}"
        )
        print(f"final state: {final}")

        # 2. A new execution that starts from the first one's final state: the totals go on.
        second_handle = await client.invoke(
            "index_documents", Batch(documents=SECOND), initial_state=final
        )
        second = Summary.model_validate(await second_handle.result(timeout=30))
        print(
            f"second batch, continued from that state: {second.documents} documents, "
            f"{second.words} words, longest {second.longest}"
        )

    # Every document was indexed exactly once, although the first execution was replayed
    # after its review (attempt > 1) from the recorded steps and state.
    runs = [line.split()[2] for line in LEDGER.read_text().splitlines() if handle.id in line]
    print(f"indexing runs in the first execution: {len(runs)} for {len(FIRST)} documents")
    if sorted(runs) != sorted(d.name for d in FIRST):
        raise SystemExit(f"some documents were indexed more than once or not at all: {runs}")
    if waiting.indexed != ["intro.md", "waits.md"] or first.documents != 4:
        raise SystemExit("the state did not survive the review")
    if second.documents != 6 or second.words <= first.words:
        raise SystemExit("the second execution did not start from the first one's state")


if __name__ == "__main__":
    asyncio.run(main())
