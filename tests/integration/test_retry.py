"""Retry of failed and cancelled executions, and the audit trail of approvals (real processes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from polos import ExecutionNotFoundError, NotRetryableError, PolosClient
from polos.protocol import ExecutionStatus
from tests.integration.conftest import WORKERS_DIR, Workers, count_lines
from tests.integration.test_waits import parked_at, status_of

RETRY_WORKER = WORKERS_DIR / "retry_worker.py"


async def test_retry__failed_execution_runs_again_from_the_failed_step(
    client: PolosClient, start_worker: Workers, side_log: Path, tmp_path: Path
) -> None:
    start_worker(RETRY_WORKER)
    fixed = tmp_path / "fixed"
    handle = await client.invoke("until_fixed", {"fixed_file": str(fixed)})
    failed = await status_of(client, handle.id, "failed")
    assert failed.error is not None and "upstream service is down" in failed.error.message

    # Still broken: the retry fails again at the same step; "first" is not run again.
    retried = await client.retry(handle.id, by="alice")
    assert retried.status in (ExecutionStatus.QUEUED, ExecutionStatus.RUNNING)
    await status_of(client, handle.id, "failed")
    fixed.write_text("yes")
    await client.retry(handle.id, by="bob")
    assert await client.result(handle.id, timeout=30) == {"first": "done", "check": "ok"}

    assert count_lines(side_log, "first " + handle.id) == 1
    assert count_lines(side_log, "check " + handle.id) == 3
    done = await client.get_execution(handle.id)
    retries = [a for a in done.attempts if a.outcome == "retried"]
    assert [a.error.message.split(";")[0] for a in retries if a.error] == [
        "retried by alice",
        "retried by bob",
    ]
    assert [s.key for s in await client.list_steps(handle.id)] == ["first", "check"]


async def test_retry__cancelled_waiting_execution_waits_again_and_resume_is_audited(
    client: PolosClient, start_worker: Workers, side_log: Path
) -> None:
    start_worker(RETRY_WORKER)
    handle = await client.invoke("needs_approval", {"amount": 5})
    await parked_at(client, handle.id, "approval")
    await client.cancel(handle.id, reason="wrong amount", by="carol")
    await client.retry(handle.id)
    await parked_at(client, handle.id, "approval")

    await client.resume(
        handle.id, "approval", {"approved": True}, by="dave", comment="checked the invoice"
    )
    result = await client.result(handle.id, timeout=30)
    assert result == {
        "approved": {"approved": True},
        "by": "dave",
        "comment": "checked the invoice",
    }
    assert count_lines(side_log, "prepare " + handle.id) == 1  # not run again by the retry
    [approval] = [s for s in await client.list_steps(handle.id) if s.key == "approval"]
    assert approval.output["resumed_by"] == "dave"
    assert approval.output["comment"] == "checked the invoice"
    assert approval.output["resumed_at"] >= approval.started_at


async def test_retry__refused_for_running_unknown_and_child_executions(
    client: PolosClient, start_worker: Workers, tmp_path: Path
) -> None:
    start_worker(RETRY_WORKER)
    waiting = await client.invoke("needs_approval", {})
    await parked_at(client, waiting.id, "approval")
    with pytest.raises(NotRetryableError, match="only failed or cancelled"):
        await client.retry(waiting.id)
    with pytest.raises(ExecutionNotFoundError):
        await client.retry("no-such-execution")

    parent = await client.invoke("parent_of_failure", {"fixed_file": str(tmp_path / "never")})
    await status_of(client, parent.id, "failed")
    page = await client.list_executions(parent_id=parent.id)
    [child] = page.items
    assert child.status == ExecutionStatus.FAILED
    with pytest.raises(NotRetryableError, match="retry the top-level execution"):
        await client.retry(child.id)


async def test_steps_api__secrets_in_outputs_and_errors_are_redacted_replay_is_not(
    client: PolosClient, start_worker: Workers
) -> None:
    from tests.integration.workers.retry_worker import LEAKED_KEY

    start_worker(RETRY_WORKER)
    handle = await client.invoke("leaky", {})
    # The workflow itself (and replay) sees the real value.
    assert await client.result(handle.id, timeout=30) == {"n": 1, "key_seen_by_workflow": True}
    steps = {s.key: s for s in await client.list_steps(handle.id)}
    assert steps["login"].output == {"api_key": "[REDACTED]", "note": "with [REDACTED]", "n": 1}
    assert steps["call"].error is not None
    assert LEAKED_KEY not in steps["call"].error.message
    assert LEAKED_KEY not in (steps["call"].error.traceback or "")
