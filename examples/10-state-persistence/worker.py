"""Durable workflow state: a pydantic model (`ctx.state`) saved with every step.

Run it with `python worker.py` (or `polos worker worker.py`), then `python main.py`.
"""

import asyncio
import os
import tempfile
from pathlib import Path

from pydantic import BaseModel

from polos import PolosClient, Worker, WorkflowContext, current_step, workflow

# Each indexing run is appended to this file, so that main.py can show that none ran twice.
LEDGER = Path(os.environ.get("POLOS_EXAMPLE_TMP") or tempfile.gettempdir()) / "10-ledger.txt"


class Document(BaseModel):
    name: str
    text: str


class Batch(BaseModel):
    documents: list[Document]
    review_after: int = 0  # pause for a human review after this many documents (0: never)


class Progress(BaseModel):
    """The workflow's state. Every field needs a default: a new execution starts from them
    (or from the `initial_state` given to `client.invoke`)."""

    indexed: list[str] = []
    words: int = 0
    longest: str | None = None
    longest_words: int = 0
    reviewed_by: str | None = None


class Summary(BaseModel):
    documents: int
    words: int
    longest: str | None
    reviewed_by: str | None
    attempt: int


def index_document(doc: Document, progress: Progress) -> int:
    """The step's work. It updates the state as its last action: the new state is recorded
    together with the step's result, so a replay restores both and never counts it twice."""
    words = len(doc.text.split())
    with LEDGER.open("a") as ledger:
        ledger.write(f"indexed {current_step().execution_id} {doc.name}\n")
    progress.indexed.append(doc.name)
    progress.words += words
    if words > progress.longest_words:
        progress.longest, progress.longest_words = doc.name, words
    return words


@workflow(state_schema=Progress)
async def index_documents(ctx: WorkflowContext, batch: Batch) -> Summary:
    """Index documents one step each, keeping running totals in `ctx.state`."""
    progress: Progress = ctx.state
    for number, doc in enumerate(batch.documents, start=1):
        await ctx.step.run(f"index:{doc.name}", index_document, doc, progress)
        if number == batch.review_after:
            # The execution parks here, holding no worker. Its state is in the database:
            # anyone can read it (`client.get_execution(id).state`, `polos executions show`).
            # After the resume, a worker replays the recorded steps and the state comes back
            # exactly as it was, without indexing anything again.
            decision = await ctx.step.suspend(
                "review", data={"indexed": progress.indexed, "words": progress.words}
            )
            progress.reviewed_by = decision.resumed_by  # saved with the next step, or the end
    return Summary(
        documents=len(progress.indexed),
        words=progress.words,
        longest=progress.longest,
        reviewed_by=progress.reviewed_by,
        attempt=ctx.attempt,
    )


client = PolosClient()  # POLOS_API_URL (default http://127.0.0.1:8080), POLOS_API_KEY, ...
worker = Worker(client=client, workflows=[index_documents])

if __name__ == "__main__":
    asyncio.run(worker.run())
