"""Replays under changed workflow code: flagged when compatible, NonDeterminismError when not."""

from __future__ import annotations

from pathlib import Path
from textwrap import dedent

import pytest

from polos import ExecutionStatus, PolosClient, WorkflowFailedError
from polos.testing import ServerProcess
from tests.integration.conftest import count_lines, run_cli, wait_until

WORKER = """
import asyncio, os, time
from polos import PolosClient, Worker, WorkflowContext, workflow

LOG = os.environ["SIDE_LOG"]

def mark(name: str, sleep: float) -> str:
    with open(LOG, "a") as f:
        f.write(f"{{name}} start {{os.getpid()}}\\n")
    time.sleep(sleep)
    return name

@workflow(id="versioned")
async def versioned(ctx: WorkflowContext, sleep: float) -> list:
    {first}
    {second}
    return [first, second, "{version}"]

if __name__ == "__main__":
    asyncio.run(Worker(client=PolosClient(), workflows=[versioned]).run())
"""


V1_FIRST = 'first = await ctx.step.run("first", mark, "first", 0.0)'
V1_SECOND = 'second = await ctx.step.run("second", mark, "second", sleep)'
# Same steps, same kinds, different source: a compatible change (e.g. a new log line).
V2_SECOND = 'second = await ctx.step.run("second", mark, "second", 0.0)  # v2'
# The recorded step "first" becomes a different kind of step: incompatible.
V3_FIRST_AS_UUID = 'first = ctx.step.uuid("first")'


def _script(tmp_path: Path, name: str, second: str, version: str, first: str = V1_FIRST) -> Path:
    path = tmp_path / f"{name}.py"
    path.write_text(dedent(WORKER).format(first=first, second=second, version=version))
    return path


@pytest.mark.timeout(60)
async def test_code_change__compatible_replay_completes_and_is_flagged(
    server: ServerProcess, client: PolosClient, start_worker, side_log: Path, tmp_path: Path
) -> None:
    old = start_worker(_script(tmp_path, "v1", V1_SECOND, "v1"), name="v1")
    handle = await client.invoke("versioned", 30.0)
    wait_until(lambda: count_lines(side_log, "second start") == 1, what="step 2 to start")
    old.kill()
    start_worker(_script(tmp_path, "v2", V2_SECOND, "v2"), name="v2")

    assert await handle.result(timeout=30) == ["first", "second", "v2"]
    execution = await client.get_execution(handle.id)
    assert execution.code_changed is True
    assert execution.crashed_attempts == 1
    assert count_lines(side_log, "first start") == 1  # replayed, not re-run
    shown = run_cli("executions", "show", handle.id, api_url=server.url)
    assert "replayed under changed workflow code" in shown.stdout


@pytest.mark.timeout(60)
async def test_code_change__unchanged_code_is_not_flagged(
    server: ServerProcess, client: PolosClient, start_worker, side_log: Path, tmp_path: Path
) -> None:
    script = _script(tmp_path, "v1", V1_SECOND, "v1")
    first = start_worker(script, name="a")
    handle = await client.invoke("versioned", 30.0)
    wait_until(lambda: count_lines(side_log, "second start") == 1, what="step 2 to start")
    first.kill()
    start_worker(script, name="b")
    wait_until(lambda: count_lines(side_log, "second start") == 2, what="step 2 to re-run")
    execution = await client.get_execution(handle.id)
    assert execution.code_changed is False
    await client.cancel(handle.id)


@pytest.mark.timeout(60)
async def test_code_change__incompatible_replay_fails_with_nondeterminism_error(
    client: PolosClient, start_worker, side_log: Path, tmp_path: Path
) -> None:
    old = start_worker(_script(tmp_path, "v1", V1_SECOND, "v1"), name="v1")
    handle = await client.invoke("versioned", 30.0)
    wait_until(lambda: count_lines(side_log, "second start") == 1, what="step 2 to start")
    old.kill()
    start_worker(_script(tmp_path, "v3", V1_SECOND, "v3", first=V3_FIRST_AS_UUID), name="v3")

    with pytest.raises(WorkflowFailedError) as failed:
        await handle.result(timeout=30)
    assert failed.value.error_type == "polos.errors.NonDeterminismError"
    assert "'first'" in failed.value.error_message
    assert "changed" in failed.value.error_message
    execution = await client.get_execution(handle.id)
    assert execution.status == ExecutionStatus.FAILED
    assert execution.failed_attempts == 1  # not retried: a replay would fail the same way


async def test_cli_lists_registered_workflows_and_connected_workers(
    server: ServerProcess, start_worker
) -> None:
    worker = start_worker()
    workflows = run_cli("workflows", api_url=server.url)
    assert workflows.returncode == 0, workflows.stderr
    for workflow_id in ("five_steps", "greet", "process_order"):
        assert workflow_id in workflows.stdout
    workers = run_cli("workers", api_url=server.url)
    assert workers.returncode == 0, workers.stderr
    assert f"-{worker.pid}-" in workers.stdout
    assert "connected" in workers.stdout
