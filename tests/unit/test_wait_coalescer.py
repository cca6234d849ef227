"""Concurrent waits of one client share long polls (with a fake poll function)."""

from __future__ import annotations

import asyncio

import pytest

from polos.client._waits import WaitCoalescer
from polos.errors import ExecutionNotFoundError, TimeoutError
from polos.protocol import Execution, ExecutionStatus


def _execution(execution_id: str, status: str) -> Execution:
    return Execution(
        id=execution_id,
        project_id="default",
        workflow_id="wf",
        status=ExecutionStatus(status),
        attempt=1,
        created_at=0,
        updated_at=0,
        available_at=0,
    )


class FakeServer:
    def __init__(self) -> None:
        self.polls: list[list[str]] = []
        self.finished: set[str] = set()
        self.unknown: set[str] = set()
        self.changed = asyncio.Event()

    async def poll(self, ids: list[str], timeout: float) -> list[Execution]:
        self.polls.append(list(ids))
        if self.unknown & set(ids):
            raise ExecutionNotFoundError(404, "execution_not_found", "unknown")
        if not set(ids) & self.finished:
            self.changed.clear()
            await asyncio.wait_for(self.changed.wait(), timeout)
        return [_execution(i, "completed" if i in self.finished else "running") for i in ids]

    def finish(self, *ids: str) -> None:
        self.finished.update(ids)
        self.changed.set()


async def test_coalescer__concurrent_waits_share_one_poll():
    server = FakeServer()
    waits = WaitCoalescer(server.poll)
    tasks = [asyncio.create_task(waits.wait(f"e{i}", 5)) for i in range(50)]
    await asyncio.sleep(0.01)
    server.finish(*(f"e{i}" for i in range(50)))
    results = await asyncio.gather(*tasks)
    assert [r.id for r in results] == [f"e{i}" for i in range(50)]
    assert len(server.polls) == 1
    assert len(server.polls[0]) == 50


async def test_coalescer__each_waiter_keeps_its_own_timeout():
    server = FakeServer()
    waits = WaitCoalescer(server.poll)
    short = asyncio.create_task(waits.wait("slow", 0.05))
    long = asyncio.create_task(waits.wait("slow", 5))
    with pytest.raises(TimeoutError, match="slow"):
        await short
    server.finish("slow")
    assert (await long).status == ExecutionStatus.COMPLETED


async def test_coalescer__an_unknown_id_fails_alone():
    server = FakeServer()
    server.unknown.add("ghost")
    waits = WaitCoalescer(server.poll)
    good = asyncio.create_task(waits.wait("real", 5))
    bad = asyncio.create_task(waits.wait("ghost", 5))
    await asyncio.sleep(0.01)
    server.finish("real")
    assert (await good).id == "real"
    with pytest.raises(ExecutionNotFoundError):
        await bad


async def test_coalescer__same_id_twice_shares_one_future():
    server = FakeServer()
    waits = WaitCoalescer(server.poll)
    a = asyncio.create_task(waits.wait("e", 5))
    b = asyncio.create_task(waits.wait("e", 5))
    await asyncio.sleep(0.01)
    server.finish("e")
    assert (await a) == (await b)
    assert server.polls == [["e"]]
