"""The gateway with a real store and fake sockets: delivery edge cases."""

from __future__ import annotations

import pytest

from polos.orchestrator import Gateway, OrchestratorSettings
from polos.protocol import DEFAULT_PROJECT_ID, Hello, WorkflowSpec
from polos.storage import Created, CreateExecution, WriteBatcher, open_store


class FlakyConnection:
    """Accepts the first ``ok_sends`` messages, then behaves like a dead socket."""

    def __init__(self, ok_sends: int) -> None:
        self.ok_sends = ok_sends
        self.sent: list[str] = []

    async def send_text(self, data: str) -> None:
        if len(self.sent) >= self.ok_sends:
            raise ConnectionError("socket closed")
        self.sent.append(data)

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        pass


@pytest.fixture
async def gateway(db_url):
    store = await open_store(db_url)
    await store.ensure_project(DEFAULT_PROJECT_ID, "Default")
    batcher = WriteBatcher(store)
    batcher.start()
    gw = Gateway(store, batcher, OrchestratorSettings(database_url=db_url))
    yield gw
    await batcher.stop()
    await store.close()


async def test_deliver__to_a_socket_that_died_after_the_claim_releases_the_execution(gateway):
    hello = Hello(worker_id="w-1", workflows=[WorkflowSpec(id="wf", fingerprint="f")])
    connection = FlakyConnection(ok_sends=1)  # the Welcome goes out, the Task does not
    session = await gateway._register(connection, hello, DEFAULT_PROJECT_ID)
    created = await gateway.batcher.submit(
        CreateExecution(project_id=DEFAULT_PROJECT_ID, workflow_id="wf", payload_json="null")
    )
    assert isinstance(created, Created)

    await gateway._dispatch_round()

    execution = await gateway.store.get_execution(DEFAULT_PROJECT_ID, created.execution.id)
    assert execution is not None
    assert execution.status == "queued"
    assert execution.worker_id is None
    assert [a.outcome for a in execution.attempts] == ["released"]
    assert execution.crashed_attempts == 0
    assert session.running == {}
    assert session.closed


async def test_hub__the_runtimes_empty_hub_is_the_one_the_gateway_notifies(db_url):
    # Regression: `hub or EventHub()` replaced an empty (hence falsy) hub with a new one, so
    # events written by workers (steps' publishes, emits) woke no SSE stream on SQLite.
    from polos.orchestrator._events import EventHub

    store = await open_store(db_url)
    batcher = WriteBatcher(store)
    hub = EventHub()
    assert len(hub) == 0
    gateway = Gateway(store, batcher, OrchestratorSettings(database_url=db_url), hub=hub)
    assert gateway.hub is hub and gateway.emits._hub is hub
    signal = hub.subscribe(DEFAULT_PROJECT_ID, "t")
    gateway.hub.notify(DEFAULT_PROJECT_ID, "t")
    assert signal.is_set()
    await store.close()
