"""Launch six jobs for two tenants on the shared queue; show that the limits held."""

import asyncio
import json

from worker import LEDGER, LLM_QUEUE, Job

from polos import PolosClient

TEXT = "Durable execution records each step so that a crashed run resumes where it stopped. " * 8
JOBS = [  # (workflow, tenant): acme has a backlog, globex has two jobs
    ("summarize", "acme"),
    ("translate", "acme"),
    ("summarize", "acme"),
    ("translate", "acme"),
    ("summarize", "globex"),
    ("translate", "globex"),
]


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    """The largest number of intervals open at the same instant."""
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    running = peak = 0
    for _, change in edges:  # at equal times, ends (-1) sort before starts (+1)
        running += change
        peak = max(peak, running)
    return peak


async def main() -> None:
    async with PolosClient() as client:
        # Each job names its tenant as the concurrency key.
        handles = [
            await client.invoke(workflow_id, Job(tenant=tenant, text=TEXT), concurrency_key=tenant)
            for workflow_id, tenant in JOBS
        ]
        await asyncio.sleep(0.25)
        queue = await client.queues.get("llm")  # the CLI: `polos queues show llm`
        keys = ", ".join(f"{k.key} {k.running} running/{k.queued} queued" for k in queue.keys)
        print(
            f"queue 'llm' a moment later: {queue.running} running, {queue.queued} queued ({keys})"
        )

        done = await client.wait_many([h.id for h in handles], timeout=60)
        if any(e.status.value != "completed" for e in done):
            raise SystemExit(f"some jobs did not complete: {[e.status.value for e in done]}")
        tokens = next(r for r in await client.queues.rate_limits() if r.name == "llm-tokens")
        print(f"token budget 'llm-tokens': {tokens.used} of {tokens.limit} used this minute")

    ids = {h.id for h in handles}
    runs = [json.loads(line) for line in LEDGER.read_text().splitlines()]
    runs = [r for r in runs if r["execution"] in ids]
    t0 = min(r["start"] for r in runs)
    print("\nwhen each model call ran (one character = 0.1 s):")
    for r in sorted(runs, key=lambda r: r["start"]):
        start, end = round((r["start"] - t0) * 10), round((r["end"] - t0) * 10)
        bar = " " * start + "#" * max(1, end - start)
        print(f"  {r['task']:<11} {r['tenant']:<7} |{bar}")

    overall = max_overlap([(r["start"], r["end"]) for r in runs])
    per_tenant = {
        tenant: max_overlap([(r["start"], r["end"]) for r in runs if r["tenant"] == tenant])
        for tenant in ("acme", "globex")
    }
    print(
        f"\nat most {overall} ran at once (limit {LLM_QUEUE.concurrency_limit}); per tenant: "
        + ", ".join(f"{t} {n} (limit {LLM_QUEUE.per_key_limit})" for t, n in per_tenant.items())
    )
    if len(runs) != len(JOBS):
        raise SystemExit(f"expected {len(JOBS)} model calls, found {len(runs)}")
    if overall > LLM_QUEUE.concurrency_limit or max(per_tenant.values()) > LLM_QUEUE.per_key_limit:
        raise SystemExit("a concurrency limit was exceeded")


if __name__ == "__main__":
    asyncio.run(main())
