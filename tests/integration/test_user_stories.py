"""User stories end to end: a real orchestrator, a real worker script, the Python client.

The worker script is ``workers/steps_worker.py``; the tests import it too, for its
``Workflow`` objects and pydantic models (typed results), as a user's app would.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from polos import (
    ExecutionNotFoundError,
    ExecutionStatus,
    PolosClient,
    WorkflowCancelledError,
    WorkflowFailedError,
    WorkflowNotFoundError,
)
from polos.testing._processes import ServerProcess
from tests.integration.conftest import count_lines, side_lines, wait_until
from tests.integration.workers import steps_worker as app

pytestmark = pytest.mark.timeout(60)


async def test_typed_workflow__pydantic_payload_gives_pydantic_result(
    client: PolosClient, start_worker, side_log: Path
) -> None:
    start_worker()

    result = await app.process_order.run(
        client, app.Order(order_id="o-1", quantity=3, unit_price=2.5), timeout=30
    )

    assert isinstance(result, app.OrderResult)
    assert result == app.OrderResult(order_id="o-1", total=7.5, status="charged")
    assert count_lines(side_log, "reserve o-1") == 1
    assert count_lines(side_log, "charge o-1") == 1


async def test_invoke__result_and_step_log(
    client: PolosClient, start_worker, side_log: Path
) -> None:
    worker = start_worker()

    handle = await client.invoke("five_steps", app.StepsInput(count=3, sleep=0.01, tag="story"))
    result = await handle.result(timeout=30)

    assert result == {"tag": "story", "values": [10, 20, 30], "total": 60}
    execution = await client.get_execution(handle.id)
    assert execution.status == ExecutionStatus.COMPLETED
    assert execution.attempt == 1
    assert execution.payload == {"count": 3, "sleep": 0.01, "tag": "story", "log": None}
    steps = await client.list_steps(handle.id)
    assert [s.key for s in steps] == ["s1", "s2", "s3"]
    assert [s.seq for s in steps] == [1, 2, 3]
    assert [s.output for s in steps] == [{"value": v, "pid": worker.pid} for v in (10, 20, 30)]
    assert all(s.error is None and s.attempts == 1 for s in steps)
    assert [count_lines(side_log, f"s{i} start") for i in (1, 2, 3)] == [1, 1, 1]


def test_sync_client__invoke_sync_and_result_sync(
    server: ServerProcess, start_worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    start_worker()
    monkeypatch.setenv("POLOS_API_URL", server.url)
    client = PolosClient()  # configured from the environment, like the worker script

    handle = client.invoke_sync("greet", {"name": "sync"})
    assert handle.result_sync(timeout=30) == {"greeting": "hello sync"}
    assert client.get_execution_sync(handle.id).status == ExecutionStatus.COMPLETED
    assert client.result_sync(handle.id, timeout=5) == {"greeting": "hello sync"}


async def test_list_executions__filter_by_status_and_workflow_with_pagination(
    client: PolosClient, start_worker
) -> None:
    start_worker()
    greets = []
    for name in ("a", "b", "c"):
        handle = await client.invoke("greet", {"name": name})
        await handle.result(timeout=30)
        greets.append(handle.id)
    failing = await client.invoke("always_fails", {})
    with pytest.raises(WorkflowFailedError):
        await failing.result(timeout=30)
    other = await client.invoke("five_steps", {"count": 1, "sleep": 0.0})
    await other.result(timeout=30)

    first = await client.list_executions(status="completed", workflow_id="greet", limit=2)
    assert [e.id for e in first.items] == [greets[2], greets[1]]  # newest first
    assert first.next_cursor is not None
    second = await client.list_executions(
        status="completed", workflow_id="greet", limit=2, cursor=first.next_cursor
    )
    assert [e.id for e in second.items] == [greets[0]]
    assert second.next_cursor is None

    failed = await client.list_executions(status=ExecutionStatus.FAILED)
    assert [e.id for e in failed.items] == [failing.id]
    assert failed.items[0].workflow_id == "always_fails"

    completed = await client.list_executions(status="completed", limit=50)
    assert {e.id for e in completed.items} == {*greets, other.id}
    assert all(e.status == ExecutionStatus.COMPLETED for e in completed.items)

    both = await client.list_executions(status=["completed", "failed"], workflow_id="always_fails")
    assert [e.id for e in both.items] == [failing.id]

    nothing = await client.list_executions(status="running", workflow_id="greet")
    assert nothing.items == []


async def test_cancel__running_execution_stops_its_coroutine(
    client: PolosClient, start_worker, side_log: Path, tmp_path: Path
) -> None:
    worker = start_worker()
    cancelled_log = tmp_path / "cancelled.log"
    handle = await client.invoke(
        "five_steps", {"count": 20, "sleep": 0.5, "tag": "long", "log": str(cancelled_log)}
    )
    wait_until(lambda: count_lines(cancelled_log, "s2 start") == 1, what="s2 to start")

    execution = await handle.cancel(reason="changed my mind")

    assert execution.status == ExecutionStatus.CANCELLED
    seen_at_cancel = side_lines(cancelled_log)
    with pytest.raises(WorkflowCancelledError) as caught:
        await handle.result(timeout=10)
    assert caught.value.execution_id == handle.id
    wait_until(
        lambda: f"execution {handle.id} cancelled" in worker.output(),
        what="the worker to cancel the coroutine",
    )
    # A later execution on the same worker runs longer than one step of the cancelled one:
    # had the cancelled coroutine gone on, its next step would have started meanwhile.
    after = await client.invoke("five_steps", {"count": 2, "sleep": 0.5, "tag": "after"})
    assert (await after.result(timeout=30))["tag"] == "after"

    lines = side_lines(cancelled_log)
    started = [line for line in lines if " start " in line]
    assert started == [line for line in seen_at_cancel if " start " in line]
    assert {line.split()[0] for line in started} <= {"s1", "s2"}
    assert not any(line.startswith(("s3 ", "s4 ")) for line in lines)
    final = await client.get_execution(handle.id)
    assert final.status == ExecutionStatus.CANCELLED
    assert final.error is not None and "changed my mind" in final.error.message
    steps = await client.list_steps(handle.id)
    assert [s.key for s in steps] in (["s1"], ["s1", "s2"])
    assert count_lines(side_log, "s1 start") == 1  # the later execution ran normally


async def test_payload_validation__invalid_payload_fails_naming_the_field(
    client: PolosClient, start_worker, side_log: Path
) -> None:
    start_worker()

    handle = await client.invoke("process_order", {"order_id": "o-2", "quantity": "lots"})
    with pytest.raises(WorkflowFailedError) as caught:
        await handle.result(timeout=30)

    error = caught.value
    assert not isinstance(error, WorkflowCancelledError)
    assert error.error_type == "polos.errors.PayloadValidationError"
    assert "quantity" in error.error_message
    assert "unit_price" in error.error_message
    execution = await client.get_execution(handle.id)
    assert execution.status == ExecutionStatus.FAILED
    assert execution.error is not None
    assert execution.error.type == "polos.errors.PayloadValidationError"
    assert execution.attempt == 1  # deterministic: not retried
    assert await client.list_steps(handle.id) == []
    assert side_lines(side_log) == []

    with pytest.raises(WorkflowFailedError) as typed:
        await app.process_order.run(
            client, {"order_id": "o-3", "quantity": 0, "unit_price": 1.0}, timeout=30
        )
    assert typed.value.error_type == "polos.errors.PayloadValidationError"
    assert "quantity" in typed.value.error_message


async def test_workflow_retry__step_fails_twice_then_succeeds(
    client: PolosClient, start_worker, side_log: Path, tmp_path: Path
) -> None:
    start_worker()
    counter = tmp_path / "flaky.count"

    handle = await client.invoke("flaky", {"counter_file": str(counter)})
    result = await handle.result(timeout=30)

    assert result == {"first": 1, "calls": 3}
    assert counter.read_text() == "3"
    execution = await client.get_execution(handle.id)
    assert execution.status == ExecutionStatus.COMPLETED
    assert execution.failed_attempts == 2
    assert execution.crashed_attempts == 0
    assert execution.attempt == 3
    assert [a.outcome for a in execution.attempts] == ["failed", "failed"]
    assert all(
        a.error is not None and a.error.type == "polos.errors.StepExecutionError"
        for a in execution.attempts
    )
    # A workflow retry replays the steps that succeeded: "first" ran once.
    assert count_lines(side_log, "first start") == 1
    steps = await client.list_steps(handle.id)
    assert [(s.key, s.error) for s in steps] == [("first", None), ("flaky", None)]


async def test_workflow_retry__always_failing_ends_failed_after_max_attempts(
    client: PolosClient, start_worker
) -> None:
    start_worker()

    handle = await client.invoke("always_fails", {})
    with pytest.raises(WorkflowFailedError) as caught:
        await handle.result(timeout=30)

    assert caught.value.error_type == "ValueError"
    assert caught.value.error_message == "boom on attempt 2"
    execution = await client.get_execution(handle.id)
    assert execution.status == ExecutionStatus.FAILED
    assert execution.failed_attempts == 2
    assert execution.attempt == 2
    assert [a.outcome for a in execution.attempts] == ["failed", "failed"]
    assert [a.error.message for a in execution.attempts if a.error] == [
        "boom on attempt 1",
        "boom on attempt 2",
    ]


async def test_idempotency__same_key_starts_one_execution(
    client: PolosClient, start_worker, side_log: Path
) -> None:
    start_worker()
    payload = {"count": 2, "sleep": 0.2, "tag": "once"}

    first = await client.invoke("five_steps", payload, idempotency_key="order-42")
    second = await client.invoke("five_steps", payload, idempotency_key="order-42")
    assert second.id == first.id
    assert await first.result(timeout=30) == {"tag": "once", "values": [10, 20], "total": 30}
    third = await client.invoke("five_steps", payload, idempotency_key="order-42")

    assert third.id == first.id
    assert await third.result(timeout=5) == {"tag": "once", "values": [10, 20], "total": 30}
    page = await client.list_executions(workflow_id="five_steps")
    assert [e.id for e in page.items] == [first.id]
    assert page.items[0].idempotency_key == "order-42"
    assert count_lines(side_log, "s1 start") == 1
    assert count_lines(side_log, "s2 start") == 1

    other = await client.invoke("five_steps", payload, idempotency_key="order-43")
    assert other.id != first.id
    await other.result(timeout=30)
    assert count_lines(side_log, "s1 start") == 2


@pytest.mark.timeout(60)
async def test_invoke_many__starts_all_and_wait_many_returns_results_in_order(
    server, client, start_worker
):
    start_worker()
    handles = await client.invoke_many("greet", [{"name": f"n{i}"} for i in range(25)])
    assert len({h.id for h in handles}) == 25
    executions = await client.wait_many([h.id for h in handles], timeout=30)
    assert [e.id for e in executions] == [h.id for h in handles]
    assert all(e.status == "completed" for e in executions)
    assert [e.result for e in executions] == [{"greeting": f"hello n{i}"} for i in range(25)]


@pytest.mark.timeout(60)
async def test_invoke_many__idempotency_keys_and_unknown_workflow(server, client, start_worker):
    start_worker()
    first = await client.invoke_many(
        "greet", [{"name": "a"}, {"name": "b"}], idempotency_keys=["k-a", None]
    )
    again = await client.invoke_many("greet", [{"name": "a2"}], idempotency_keys=["k-a"])
    assert again[0].id == first[0].id
    with pytest.raises(WorkflowNotFoundError, match="nope"):
        await client.invoke_many("nope", [1])
    with pytest.raises(ExecutionNotFoundError):
        await client.wait_many(["no-such-id"], timeout=5)


@pytest.mark.timeout(60)
async def test_wait_many__returns_promptly_when_some_had_already_finished(
    server, client, start_worker
):
    start_worker()
    done = await client.invoke("greet", {"name": "early"})
    await done.result(timeout=30)
    later = await client.invoke("five_steps", {"sleep": 0.2, "tag": "later"})
    started = time.monotonic()
    executions = await client.wait_many([done.id, later.id], timeout=25)
    assert [e.status for e in executions] == ["completed", "completed"]
    # Without the fix the call sat out its whole long-poll timeout (30 s) before answering.
    assert time.monotonic() - started < 20
