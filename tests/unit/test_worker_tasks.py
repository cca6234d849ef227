"""Worker task bookkeeping, with a fake channel (no orchestrator)."""

from __future__ import annotations

import asyncio

from polos import PolosClient, Worker, WorkflowContext, workflow
from polos.protocol import Ack, Task

release = asyncio.Event()


@workflow(id="blocking")
async def blocking(ctx: WorkflowContext) -> str:
    await release.wait()
    return "done"


class FakeChannel:
    def __init__(self) -> None:
        self.sent: list[object] = []
        self._req = 0

    async def request(self, build):
        self._req += 1
        self.sent.append(build(self._req))
        return Ack(req=self._req)


async def test_on_task__newer_lease_supersedes_the_running_attempt():
    release.clear()
    worker = Worker(client=PolosClient("http://127.0.0.1:9"), workflows=[blocking])
    channel = FakeChannel()
    worker._channel = channel  # type: ignore[assignment]
    worker._on_task(Task(execution_id="e1", workflow_id="blocking", epoch=1, attempt=1))
    first = worker._running["e1"]
    await asyncio.sleep(0)
    worker._on_task(Task(execution_id="e1", workflow_id="blocking", epoch=2, attempt=2))
    second = worker._running["e1"]
    assert second is not first
    await asyncio.wait_for(asyncio.gather(first.job, return_exceptions=True), 5)
    # The superseded attempt ended without removing the new one's entry.
    assert worker._running.get("e1") is second
    release.set()
    await asyncio.wait_for(second.job, 5)
    assert "e1" not in worker._running
    completes = [m for m in channel.sent if type(m).__name__ == "Complete"]
    assert [(m.epoch, m.result) for m in completes] == [(2, "done")]
