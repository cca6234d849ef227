"""Flow control end to end: queue limits, concurrency keys, priorities and rate limits.

Real orchestrators (SQLite and PostgreSQL), real worker processes
(``workers/flow_worker.py``). Concurrency is measured by the workflows
themselves: a counter file shared by every worker process, updated under
``flock`` while each execution runs; its high-water mark is the most executions
that were really running at one moment.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from polos import ApiError, ConfigurationError, ExecutionStatus, PolosClient
from polos.testing._processes import ServerProcess
from tests.integration.conftest import SQLITE_ONLY, run_cli
from tests.integration.test_waits import eventually, parked_at, status_of

pytestmark = pytest.mark.timeout(120)

FLOW_WORKER = Path(__file__).parent / "workers" / "flow_worker.py"


@pytest.fixture
def flow_dir(tmp_path: Path) -> Path:
    path = tmp_path / "flow"
    path.mkdir()
    return path


def high_water(flow_dir: Path) -> dict[str, int]:
    path = flow_dir / "counters.json"
    return json.loads(path.read_text())["max"] if path.exists() else {}


def log_lines(flow_dir: Path, prefix: str) -> list[list[str]]:
    path = flow_dir / "log.txt"
    if not path.exists():
        return []
    return [ln.split() for ln in path.read_text().splitlines() if ln.startswith(prefix + " ")]


def start_workers(start_worker: Any, flow_dir: Path, n: int, **env: str) -> None:
    for _ in range(n):
        start_worker(FLOW_WORKER, env={"FLOW_DIR": str(flow_dir), **env})


# ---------------------------------------------------------------------- concurrency limits


async def test_queue_limit__never_more_than_the_limit_run_at_once_across_three_workers(
    client: PolosClient, start_worker: Any, flow_dir: Path
) -> None:
    start_workers(start_worker, flow_dir, 3, MAX_CONCURRENT="100", HOLD_SECONDS="0.03")

    handles = await client.invoke_many("limited", [{} for _ in range(200)])
    done = await client.wait_many([h.id for h in handles], timeout=90)

    assert all(e.status == ExecutionStatus.COMPLETED for e in done)
    assert len(log_lines(flow_dir, "start")) == 200  # each ran once
    assert high_water(flow_dir)["limited"] == 5  # never above the limit, and it was used


async def test_concurrency_keys__per_key_limit_holds_and_every_key_progresses(
    client: PolosClient, start_worker: Any, flow_dir: Path
) -> None:
    # 0.15 s per run: tenant "a"'s backlog (40 runs, 2 at a time) lasts ~3 s, far longer
    # than invoking the other tenants' runs takes even on a loaded machine.
    start_workers(start_worker, flow_dir, 3, HOLD_SECONDS="0.15")
    tenants = ["a", "b", "c", "d", "e"]
    # Tenant "a" floods the queue first; the others must not wait behind all of it.
    items = [("per_tenant", {"tenant": "a"}, "a") for _ in range(40)]
    items += [("per_tenant", {"tenant": t}, t) for t in tenants[1:] for _ in range(6)]
    handles = [
        await client.invoke(wf, payload, concurrency_key=key) for wf, payload, key in items[:40]
    ]
    handles += await asyncio.gather(
        *(client.invoke(wf, payload, concurrency_key=key) for wf, payload, key in items[40:])
    )

    # Every other tenant finishes its work while tenant "a" still has a backlog.
    others = [h.id for h, (_, _, key) in zip(handles, items, strict=True) if key != "a"]
    await client.wait_many(others, timeout=60)
    a_done = [
        e
        for e in (await client.list_executions(workflow_id="per_tenant", limit=500)).items
        if e.concurrency_key == "a" and e.status == ExecutionStatus.COMPLETED
    ]
    assert len(a_done) < 40, "tenant 'a' finished everything before the others: not fair"
    await client.wait_many([h.id for h in handles], timeout=60)

    peaks = high_water(flow_dir)
    assert peaks["per-tenant"] <= 6
    assert all(peaks[f"tenant:{t}"] <= 2 for t in tenants), peaks
    assert peaks["tenant:a"] == 2


async def test_waiting_executions__hold_no_slot_of_their_queue(
    client: PolosClient, start_worker: Any, flow_dir: Path
) -> None:
    start_workers(start_worker, flow_dir, 1)
    parked = [await client.invoke("limited_approval", {}) for _ in range(8)]  # limit is 5
    for handle in parked:
        await parked_at(client, handle.id, "approval")

    # 8 parked executions of a 5-slot queue: new work still runs.
    fresh = await client.invoke_many("limited", [{} for _ in range(5)])
    await client.wait_many([h.id for h in fresh], timeout=30)
    for handle in parked:
        await client.resume(handle.id, "approval", {})
    finished = await client.wait_many([h.id for h in parked], timeout=30)
    assert {e.status for e in finished} == {ExecutionStatus.COMPLETED}
    assert high_water(flow_dir)["limited"] <= 5


async def test_priority__higher_priority_runs_first_within_a_queue(
    client: PolosClient, start_worker: Any, flow_dir: Path
) -> None:
    # Register the workflows, stop the worker, queue the work, then one worker with one
    # slot takes it in order.
    first = start_worker(FLOW_WORKER, env={"FLOW_DIR": str(flow_dir)})
    first.stop()
    low = [await client.invoke("limited", {}, priority=0) for _ in range(6)]
    high = [await client.invoke("limited", {}, priority=10) for _ in range(6)]
    start_workers(start_worker, flow_dir, 1, MAX_CONCURRENT="1")
    await client.wait_many([h.id for h in low + high], timeout=30)

    order = [line[1] for line in log_lines(flow_dir, "start")]
    assert set(order[:6]) == {h.id for h in high}
    assert order[6:] == [h.id for h in low]  # FIFO within a priority


# ---------------------------------------------------------------------- rate limits


async def test_queue_rate_limit__starts_per_window_never_exceed_the_limit(
    client: PolosClient, start_worker: Any, flow_dir: Path
) -> None:
    start_workers(start_worker, flow_dir, 2)
    handles = await client.invoke_many("rate_started", [{} for _ in range(10)])

    # 4 starts per sliding 2 s: the first 4 at once, the others as units leave the window.
    queue = await eventually(
        lambda: _blocked(client, "starts"), "queue 'starts' to report its exhausted rate"
    )
    assert queue.queued > 0  # waiting in the queue (the workers have free slots)
    done = await client.wait_many([h.id for h in handles], timeout=30)
    # A start is the orchestrator's claim (started_at), the moment the unit is taken; the
    # workflow's own first line runs a few ms later on its worker.
    starts = sorted(e.started_at or 0 for e in done)
    for i, at in enumerate(starts):
        in_window = [s for s in starts[i:] if s < at + 2000]
        assert len(in_window) <= 4, f"{len(in_window)} starts within 2 s from {at}: {starts}"
    assert starts[-1] - starts[0] >= 4000  # 10 starts need at least two full windows
    assert len(log_lines(flow_dir, "rate-start")) == 10


async def _blocked(client: PolosClient, name: str) -> Any:
    queue = await client.queues.get(name)
    return queue if queue.rate_blocked_until is not None else None


async def test_acquire__units_per_window_hold_across_executions_and_keys(
    client: PolosClient, start_worker: Any, flow_dir: Path
) -> None:
    start_workers(start_worker, flow_dir, 2)
    # 'tokens': 100 per sliding 2 s. Six executions want 3 x 30 units each on one key.
    handles = await client.invoke_many(
        "spend_tokens", [{"units": 30, "times": 3} for _ in range(6)]
    )
    other_key = await client.invoke("spend_tokens", {"units": 100, "key": "tenant-b"})

    # The other key has its own window: it does not wait behind the flood.
    assert (await other_key.result(timeout=10)) is not None
    waits = await eventually(
        lambda: _acquire_waits(client), "executions parked for rate-limit units"
    )
    assert waits, "executions waiting for units must be parked (no worker slot)"
    done = await client.wait_many([h.id for h in handles], timeout=60)
    assert {e.status for e in done} == {ExecutionStatus.COMPLETED}

    grants = []
    for h in handles:
        for step in await client.list_steps(h.id):
            if step.kind == "acquire":
                grants.append((step.output["granted_at"], step.output["units"]))
    grants.sort()
    assert sum(u for _, u in grants) == 6 * 3 * 30
    for i, (at, _) in enumerate(grants):
        used = sum(u for t, u in grants[i:] if t < at + 2000)
        assert used <= 100, f"{used} units granted within 2 s from {at}"


async def _acquire_waits(client: PolosClient) -> list[Any]:
    page = await client.list_waits(kind="acquire", limit=500)
    return page.items


async def test_acquire__a_rate_limit_object_defines_it_and_timeout_raises(
    client: PolosClient, start_worker: Any, flow_dir: Path
) -> None:
    start_workers(start_worker, flow_dir, 1)
    # 1 unit per 60 s: the second acquire cannot be granted within 0.5 s.
    handle = await client.invoke("spend_inline", {"timeout": 0.5})
    execution = await status_of(client, handle.id, "failed")
    assert execution.error is not None and "WaitTimeoutError" in execution.error.type
    assert "rate limit 'inline'" in execution.error.message

    state = await client.queues.list()
    inline = next(r for r in state.rate_limits if r.name == "inline")
    assert (inline.limit, inline.period_ms, inline.used) == (1, 60_000, 1)


async def test_acquire__unknown_limit_or_too_many_units_fail_the_execution_clearly(
    client: PolosClient, start_worker: Any, flow_dir: Path
) -> None:
    start_workers(start_worker, flow_dir, 1)
    too_many = await client.invoke("spend_tokens", {"units": 101})
    execution = await status_of(client, too_many.id, "failed")
    assert execution.error is not None
    assert "can never be granted by rate limit 'tokens'" in execution.error.message


# ---------------------------------------------------------------------- visibility


async def test_queue_listing__shows_limits_and_counts(
    client: PolosClient, start_worker: Any, flow_dir: Path
) -> None:
    start_workers(start_worker, flow_dir, 1)  # registers the declared queues
    parked = [await client.invoke("limited_approval", {}) for _ in range(3)]
    for handle in parked:
        await parked_at(client, handle.id, "approval")
    await client.invoke("per_tenant", {"tenant": "x"}, concurrency_key="x", queue="adhoc")

    state = await client.queues.list()
    by_name = {q.name: q for q in state.items}
    assert by_name["limited"].concurrency_limit == 5
    assert by_name["limited"].waiting == 3 and by_name["limited"].running == 0
    assert (by_name["per-tenant"].concurrency_limit, by_name["per-tenant"].per_key_limit) == (6, 2)
    assert by_name["starts"].rate_limit == "starts-per-2s"
    assert "adhoc" in by_name  # a queue named at invoke time is created without limits
    assert {r.name for r in state.rate_limits} >= {"tokens", "starts-per-2s"}

    with pytest.raises(ApiError) as missing:
        await client.queues.get("nope")
    assert missing.value.status_code == 404

    info = await client.queues.set_rate_limit("tokens", 500, 60)
    assert (info.limit, info.period_ms) == (500, 60_000)


@SQLITE_ONLY
async def test_bad_flow_input__is_a_clear_4xx(client: PolosClient) -> None:
    for path, body in [
        ("/rate-limits/bad%20name", {"limit": 1, "period_seconds": 1}),
        ("/rate-limits/ok", {"limit": 0, "period_seconds": 1}),
        ("/rate-limits/ok", {"limit": 1, "period_seconds": 0}),
        ("/rate-limits/ok", {"limit": 1, "period_seconds": 0.0001}),
    ]:
        with pytest.raises(ApiError) as err:
            await client._request("PUT", path, json=body)
        assert err.value.status_code in (400, 422), (path, body)
    for body in ({"queue": "bad queue name"}, {"queue": ""}, {"concurrency_key": ""}):
        with pytest.raises(ApiError) as err:
            await client._request("POST", "/workflows/limited/executions", json=body)
        assert err.value.status_code == 422, body
    with pytest.raises(ConfigurationError, match="queue"):
        await client.invoke("limited", {}, queue="bad queue name")


# ---------------------------------------------------------------------- CLI


@SQLITE_ONLY
async def test_cli__queues_and_rate_limits(
    client: PolosClient, server: ServerProcess, start_worker: Any, flow_dir: Path
) -> None:
    start_workers(start_worker, flow_dir, 1)
    parked = await client.invoke("limited_approval", {})
    await parked_at(client, parked.id, "approval")

    listing = run_cli("queues", api_url=server.url)
    assert listing.returncode == 0, listing.stderr
    row = next(
        line.split() for line in listing.stdout.splitlines() if line.strip().startswith("limited ")
    )
    assert row[:7] == ["limited", "5", "-", "0", "0", "0", "1"]  # limit, per key, r/q/d/waiting
    assert "tokens" in listing.stdout and "starts-per-2s" in listing.stdout

    as_json = json.loads(run_cli("queues", "--json", api_url=server.url).stdout)
    assert {q["name"] for q in as_json["items"]} >= {"limited", "per-tenant", "starts"}

    changed = run_cli(
        "rate-limits", "set", "tokens", "--limit", "7", "--period", "30", api_url=server.url
    )
    assert changed.returncode == 0, changed.stderr
    assert "tokens: 7 per 30 s" in changed.stdout

    missing = run_cli("queues", "show", "nope", api_url=server.url)
    assert missing.returncode != 0 and "Traceback" not in missing.stderr
    assert "no queue 'nope'" in missing.stderr

    bad = run_cli(
        "rate-limits", "set", "bad name", "--limit", "1", "--period", "1", api_url=server.url
    )
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
