"""The workflow examples (08-13) run end to end, offline, and show what they claim.

The facts are checked from what the examples' side effects wrote to ``POLOS_EXAMPLE_TMP``
(ledgers), not only from what ``main.py`` printed about itself.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

from tests.examples.conftest import RunExample


def _lines(path: Path) -> list[str]:
    assert path.exists(), f"{path.name} was not written"
    return path.read_text().splitlines()


def _max_overlap(intervals: list[tuple[float, float]]) -> int:
    edges = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    running = peak = 0
    for _, change in edges:
        running += change
        peak = max(peak, running)
    return peak


def test_08_workflow_basics(run_example: RunExample) -> None:
    run = run_example("08-workflow-basics")

    # One charge per execution (ada's and grace's), even though each replayed after its child.
    charges = _lines(run.scratch / "08-ledger.txt")
    assert len(charges) == 2, charges
    assert len({line.split()[1].split(":")[0] for line in charges}) == 2
    # The step log shows every kind of step the example uses, in order.
    kinds = re.findall(r"^\s+\d+\. (\S+)\s+(\S+)", run.output, flags=re.M)
    assert kinds == [
        ("order_ref", "uuid"),
        ("placed_at", "now"),
        ("lucky_draw", "random"),
        ("price", "run"),
        ("price#2", "run"),
        ("shipping", "invoke_wait"),
        ("grace_period", "sleep"),
        ("charge", "run"),
    ], run.output
    assert "child quote_shipping -> completed" in run.output
    assert "checkout for grace: 198.0 + 15.0 shipping (DHL, 5 days)" in run.output
    assert "same idempotency key -> same execution: True" in run.output


def test_09_suspend_resume(run_example: RunExample) -> None:
    run = run_example("09-suspend-resume")

    assert "sam: 740.0 EUR (over the 500 EUR self-approval limit)" in run.output
    assert "/approve/" in run.output
    assert "sam: reimbursed by maria ('audit trip, fine')" in run.output
    assert "kim: rejected by maria ('name the client'), payout None" in run.output
    assert "second decision refused" in run.output and "already resumed" in run.output
    payouts = _lines(run.scratch / "09-ledger.txt")
    assert len(payouts) == 1 and " sam 740.00" in payouts[0], payouts


def test_10_state_persistence(run_example: RunExample) -> None:
    run = run_example("10-state-persistence")

    assert "waiting for review: indexed ['intro.md', 'waits.md'], 16 words so far" in run.output
    attempt = re.search(r"first batch \(attempt (\d+)\): 4 documents, 26 words", run.output)
    assert attempt and int(attempt.group(1)) >= 2, run.output  # it did replay after the review
    assert "reviewed by lee" in run.output
    assert "second batch, continued from that state: 6 documents, 59 words" in run.output
    # Every document was indexed exactly once across both executions.
    indexed = Counter(line.split()[2] for line in _lines(run.scratch / "10-ledger.txt"))
    assert set(indexed.values()) == {1} and len(indexed) == 6, indexed


def test_11_error_handling(run_example: RunExample) -> None:
    run = run_example("11-error-handling")

    calls: dict[str, list[str]] = {}
    for line in _lines(run.scratch / "11-ledger.txt"):
        _, key, attempt, outcome = line.split(" ", 3)
        calls.setdefault(key, []).append(f"{attempt} {outcome}")
    # Retries: failed twice, succeeded on the third attempt of the same step.
    assert calls["rate"] == ["attempt=1 failed", "attempt=2 failed", "attempt=3 ok"]
    assert "100 EUR = 108.0 USD" in run.output and "after 3 attempts" in run.output
    # Fallback: the primary's two attempts, then the backup once.
    assert calls["primary"] == ["attempt=1 failed", "attempt=2 failed"]
    assert calls["backup"] == ["attempt=1 ok"]
    assert "12.5 EUR from backup (primary failed 2 times" in run.output
    # Compensation: the non-retryable hotel failure ran once, the flight was cancelled once.
    assert calls["flight"] == ["attempt=1 booked flight to Oslo"]
    assert calls["hotel"] == ["attempt=1 failed"]
    assert len(calls["cancel_flight"]) == 1 and "cancelled FL-" in calls["cancel_flight"][0]
    assert "TripNotBooked: no rooms left in Oslo; flight FL-" in run.output


def test_12_shared_queues(run_example: RunExample) -> None:
    run = run_example("12-shared-queues")

    runs = [json.loads(line) for line in _lines(run.scratch / "12-ledger.jsonl")]
    assert len(runs) == 6
    assert Counter(r["task"] for r in runs) == {"summary": 3, "translation": 3}
    overall = _max_overlap([(r["start"], r["end"]) for r in runs])
    acme = _max_overlap([(r["start"], r["end"]) for r in runs if r["tenant"] == "acme"])
    assert 2 <= overall <= 3, runs  # parallel, but never more than the queue's limit
    assert acme <= 2, runs  # never more than per_key_limit for one tenant
    assert "token budget 'llm-tokens': 4008 of 40000 used" in run.output
    assert "limit 3); per tenant: acme" in run.output


def test_13_parallel_review(run_example: RunExample) -> None:
    run = run_example("13-parallel-review")

    assert "'Add monthly_total helper': APPROVED" in run.output
    assert "'Search orders by filter': CHANGES REQUESTED" in run.output
    assert "eval() on request data allows arbitrary code execution" in run.output
    assert "a query inside a loop" in run.output
    # Each pull request: three reviewer runs, each looked up its guidelines (a tool step).
    summaries = re.findall(r"3 reviewer runs \((.*?)\), (\d+) guideline lookups", run.output)
    assert summaries == [("performance_reviewer, security_reviewer, style_reviewer", "3")] * 2
