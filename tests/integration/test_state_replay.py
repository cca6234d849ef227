"""A replay starts from the state the execution started with, not from its latest state.

Every step that changed ``ctx.state`` records a snapshot, and ``executions.state`` always
holds the latest one (the API shows it). A replay (after a wait, a crash, a workflow retry
or a retry from the UI) must nevertheless start from the *initial* state: the replayed
steps restore their snapshots in order, so code that reads ``ctx.state`` before the first
of them sees what the first attempt saw. Regression: claims handed the worker the latest
state, and a loop over ``ctx.state`` was skipped on replay (``{"results": [], "done": 3}``).

End to end with a real orchestrator and ``workers/state_worker.py``, then at the store for
every claim path; each test runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from polos import ExecutionStatus, PolosClient, WaitKind
from polos.protocol import (
    DEFAULT_PROJECT_ID,
    ErrorInfo,
    RetryPolicySpec,
    StepKind,
    StepRecord,
    Task,
    WorkflowSpec,
    now_ms,
)
from polos.storage import (
    OK,
    ClaimOp,
    Created,
    CreateExecution,
    FailOp,
    RecordStepOp,
    Store,
    open_store,
)
from tests.integration.conftest import count_lines, eventually
from tests.integration.test_store import one, register

pytestmark = pytest.mark.timeout(60)

STATE_WORKER = Path(__file__).parent / "workers" / "state_worker.py"
P = DEFAULT_PROJECT_ID
ORCH = "orch-1"

T = TypeVar("T")


# ---------------------------------------------------------------------- helpers (end to end)


async def suspended(client: PolosClient, workflow_id: str = "state_loop") -> str:
    """Wait until an execution of ``workflow_id`` waits at its ``review`` suspend; its id."""

    async def probe() -> str | None:
        page = await client.list_waits(kind=WaitKind.SUSPEND, workflow_id=workflow_id)
        for wait in page.items:
            if wait.step_key == "review":
                execution = await client.get_execution(wait.execution_id)
                if execution.status == ExecutionStatus.WAITING:
                    return wait.execution_id
        return None

    return await eventually(probe, f"{workflow_id} to wait at 'review'")


def expected(initial_done: int = 0) -> dict[str, Any]:
    """What ``state_loop`` returns when every attempt starts from ``done = initial_done``."""
    return {
        "results": [done * 10 for done in range(initial_done, 3)],
        "done": 3,
        "started_with": initial_done,
    }


# ---------------------------------------------------------------------- end to end


@pytest.mark.parametrize("initial_done", [None, 1], ids=["no-initial-state", "initial-state"])
async def test_suspend__the_replay_after_resume_starts_from_the_initial_state(
    client: PolosClient, start_worker, side_log: Path, initial_done: int | None
) -> None:
    start_worker(STATE_WORKER)
    options = {} if initial_done is None else {"initial_state": {"done": initial_done}}
    handle = await client.invoke("state_loop", {"then": "suspend"}, **options)

    assert await suspended(client) == handle.id
    # While it waits, the API shows the latest state...
    assert (await client.get_execution(handle.id)).state == {"done": 3}
    await client.resume(handle.id, "review")

    # ... and the replay after the resume went through the loop again, from the start.
    want = expected(initial_done or 0)
    assert await handle.result(timeout=20) == want
    assert count_lines(side_log, "work " + handle.id) == len(want["results"])  # no step ran twice
    rounds = len(want["results"])
    keys = ["work"] + [f"work#{n}" for n in range(2, rounds + 1)] + ["review"]
    assert [s.key for s in await client.list_steps(handle.id)] == keys
    execution = await client.get_execution(handle.id)
    assert execution.state == {"done": 3}
    assert execution.attempt == 2


async def test_child__the_replay_starts_from_the_initial_state_its_parent_gave(
    client: PolosClient, start_worker, side_log: Path
) -> None:
    start_worker(STATE_WORKER)
    parent = await client.invoke("state_parent", 1)

    child_id = await suspended(client)
    child = await client.get_execution(child_id)
    assert child.parent_id == parent.id
    await client.resume(child_id, "review")

    assert await parent.result(timeout=20) == expected(1)
    assert count_lines(side_log, "work " + child_id) == 2


@pytest.mark.chaos
async def test_crash__worker_killed_mid_sleep_replays_from_the_initial_state(
    client: PolosClient, start_worker, side_log: Path
) -> None:
    worker = start_worker(STATE_WORKER)
    handle = await client.invoke("state_loop", {"then": "sleep", "seconds": 2})

    async def napping() -> bool:
        return any(s.key == "nap" for s in await client.list_steps(handle.id))

    await eventually(napping, "the in-process sleep to be recorded")
    worker.kill()
    start_worker(STATE_WORKER, name="second")

    assert await handle.result(timeout=20) == expected()
    execution = await client.get_execution(handle.id)
    assert execution.crashed_attempts == 1
    assert count_lines(side_log, "work " + handle.id) == 3


async def test_workflow_retry__the_second_attempt_starts_from_the_initial_state(
    client: PolosClient, start_worker, side_log: Path
) -> None:
    start_worker(STATE_WORKER)
    handle = await client.invoke("state_loop", {"then": "fail"})

    assert await handle.result(timeout=20) == expected()
    execution = await client.get_execution(handle.id)
    assert (execution.attempt, execution.failed_attempts) == (2, 1)
    assert count_lines(side_log, "work " + handle.id) == 3


async def test_retry__a_failed_execution_retried_starts_from_the_initial_state(
    client: PolosClient, start_worker, side_log: Path
) -> None:
    start_worker(STATE_WORKER)
    handle = await client.invoke("state_loop", {"then": "fail", "fail_attempts": 2})

    async def failed() -> bool:
        return (await client.get_execution(handle.id)).status == ExecutionStatus.FAILED

    await eventually(failed, "the execution to fail twice")
    assert (await client.get_execution(handle.id)).state == {"done": 3}
    await client.retry(handle.id)

    assert await handle.result(timeout=20) == expected()
    assert count_lines(side_log, "work " + handle.id) == 3


# ---------------------------------------------------------------------- at the store


def _spec(workflow_id: str, queue: dict[str, Any] | None = None) -> WorkflowSpec:
    return WorkflowSpec(
        id=workflow_id,
        fingerprint="fp-1",
        # a workflow retry without delay, so that the next claim finds it at once
        retry=RetryPolicySpec(max_attempts=2, initial_interval_ms=0),
        options={"queue": queue} if queue else {},
    )


# Each takes a different claim statement (see ``storage/_claims.py``).
CLAIM_PATHS = {
    "no-queue": (_spec("sr_plain"), {}),
    "concurrency-limit": (_spec("sr_limited", {"name": "sr-limited", "concurrency_limit": 5}), {}),
    "queue-without-limits": (_spec("sr_open", {"name": "sr-open"}), {}),
    "concurrency-key": (
        _spec("sr_keyed", {"name": "sr-keyed", "concurrency_limit": 5, "per_key_limit": 2}),
        {"concurrency_key": "tenant-1"},
    ),
}
INITIAL = [(None, False, None), ('{"done": 1}', True, {"done": 1})]
INITIAL_IDS = ["no-initial-state", "initial-state"]


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    """A migrated store with the default project, closed after the test."""
    s = await open_store(db_url)
    try:
        await s.ensure_project(P, "Default project")
        yield s
    finally:
        await s.close()


async def claim_one(store: Store) -> Task:
    tasks = await one(store, ClaimOp(P, "w1", 10))
    assert isinstance(tasks, list) and len(tasks) == 1, tasks
    return tasks[0]


def snapshot_step(key: str, seq: int, state: Any) -> StepRecord:
    return StepRecord(
        key=key,
        seq=seq,
        kind=StepKind.RUN,
        output=seq,
        has_state=True,
        state=state,
        started_at=now_ms(),
        completed_at=now_ms(),
    )


async def run_first_attempt(
    store: Store, spec: WorkflowSpec, state_json: str | None, **create: Any
) -> Task:
    """Create and claim an execution; record two steps that changed its state."""
    await register(store, "w1", [spec])
    created = await one(store, CreateExecution(P, spec.id, "null", state_json=state_json, **create))
    assert isinstance(created, Created) and created.created
    first = await claim_one(store)
    assert first.epoch == 1
    outcome = await store.apply_batch(
        [
            RecordStepOp(first.execution_id, first.epoch, snapshot_step("a", 1, {"done": 2})),
            RecordStepOp(first.execution_id, first.epoch, snapshot_step("b", 2, {"done": 3})),
        ]
    )
    assert outcome.results == [OK, OK]
    execution = await store.get_execution(P, first.execution_id)
    assert execution is not None and execution.state == {"done": 3}  # the latest, for the API
    return first


@pytest.mark.parametrize("path", list(CLAIM_PATHS))
@pytest.mark.parametrize(("state_json", "has_state", "state"), INITIAL, ids=INITIAL_IDS)
async def test_claim__every_claim_path_hands_a_replay_the_initial_state(
    store: Store, path: str, state_json: str | None, has_state: bool, state: Any
) -> None:
    spec, create = CLAIM_PATHS[path]
    first = await run_first_attempt(store, spec, state_json, **create)
    assert (first.has_state, first.state) == (has_state, state)

    await store.worker_gone("w1", orchestrator_id=ORCH)
    await register(store, "w1", [spec])
    replay = await claim_one(store)

    assert replay.epoch == 2
    assert (replay.has_state, replay.state) == (has_state, state)
    assert [(s.key, s.state) for s in replay.history] == [("a", {"done": 2}), ("b", {"done": 3})]


@pytest.mark.parametrize("how", ["workflow-retry", "retry-from-the-ui"])
@pytest.mark.parametrize(("state_json", "has_state", "state"), INITIAL, ids=INITIAL_IDS)
async def test_retry__the_next_attempt_starts_from_the_initial_state(
    store: Store, how: str, state_json: str | None, has_state: bool, state: Any
) -> None:
    first = await run_first_attempt(store, CLAIM_PATHS["no-queue"][0], state_json)
    # A failed attempt reports the state it ended with: the latest one.
    failure = FailOp(
        first.execution_id,
        first.epoch,
        ErrorInfo(type="ValueError", message="boom"),
        retryable=how == "workflow-retry",
        state_json='{"done": 4}',
    )
    assert await one(store, failure) == OK
    if how == "retry-from-the-ui":
        failed = await store.get_execution(P, first.execution_id)
        assert failed is not None and failed.status == ExecutionStatus.FAILED
        retried = await store.retry_execution(P, first.execution_id, by="test")
        assert retried.refused is None
    execution = await store.get_execution(P, first.execution_id)
    assert execution is not None and execution.status == ExecutionStatus.QUEUED
    assert execution.state == {"done": 4}

    replay = await claim_one(store)
    assert replay.execution_id == first.execution_id
    assert (replay.has_state, replay.state) == (has_state, state)
    assert [s.key for s in replay.history] == ["a", "b"]
