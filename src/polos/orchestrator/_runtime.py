"""Everything one orchestrator process holds: store, batcher, gateway, waiters."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

from polos.protocol import DEFAULT_PROJECT_ID, Goodbye
from polos.storage import (
    CANCEL_CHANNEL,
    DONE_CHANNEL,
    EVENT_CHANNEL,
    KEYS_CHANNEL,
    WORK_CHANNEL,
    Store,
    Transition,
    WriteBatcher,
    cancel_targets,
    open_store,
)

from ._auth import Authenticator
from ._events import EventHub, Timers
from ._gateway import Gateway
from ._metrics import OrchestratorMetrics  # metrics
from ._retention import RetentionLoop  # retention
from ._schedules import ScheduleLoop
from ._settings import OrchestratorSettings
from ._signing import Signer, load_signing_key  # approval links
from ._trace_export import TraceExporter  # tracing
from ._waiters import Waiters

log = logging.getLogger("polos.orchestrator")


class OrchestratorRuntime:
    """The live state of an orchestrator, built by :meth:`start` and torn down by :meth:`stop`."""

    signer: Signer  # approval links: signs links and sessions; set by open() (server secret)

    def __init__(self, settings: OrchestratorSettings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self.waiters = Waiters()
        self.metrics = OrchestratorMetrics()  # metrics: per-app registry, fed by batcher + gateway
        self.batcher = WriteBatcher(
            store, on_transitions=self._on_transitions, on_batch=self.metrics.batch
        )
        self.hub = EventHub()
        self.timers = Timers(store, self.batcher, on_stop=self.stop_running)
        self.gateway = Gateway(
            store,
            self.batcher,
            settings,
            hub=self.hub,
            on_timer_change=self.timers.wake,
            metrics=self.metrics,  # metrics
            on_transitions=self._on_transitions,
        )
        self.schedule_loop = ScheduleLoop(store.schedules, self.gateway.wake)
        # retention: prunes old finished work (None unless POLOS_RETENTION_* asks for it)
        self.retention = RetentionLoop(store, settings.retention) if settings.retention else None
        # tracing: OTLP export of finished executions (None unless OTEL_* asks for it)
        self.tracing = TraceExporter.from_env(store, settings.orchestrator_id)
        self.auth = Authenticator(store, local=settings.local)
        self._projects: set[str] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._notified: set[asyncio.Future[Any]] = set()

    @classmethod
    async def open(cls, settings: OrchestratorSettings) -> OrchestratorRuntime:
        """Connect to (and migrate) the database, create the default project, start loops."""
        store = await open_store(settings.database_url)
        runtime = cls(settings, store)
        await store.ensure_project(DEFAULT_PROJECT_ID, "Default project")
        runtime.signer = Signer(await load_signing_key(store))  # approval links
        runtime.batcher.start()
        await runtime.gateway.start()
        runtime.timers.start()
        runtime.schedule_loop.start()
        if runtime.retention is not None:  # retention: prune old finished work
            runtime.retention.start()
        if runtime.tracing is not None:  # tracing
            runtime.tracing.start()
        if store.dialect.notifies:
            # Other orchestrators share this database: hear what they do, and keep a slow
            # sweep as the safety net for notifications missed while disconnected.
            runtime._tasks = [
                asyncio.create_task(runtime._listen(), name="polos-listen"),
                asyncio.create_task(runtime._sweep_waiters(), name="polos-waiter-sweep"),
            ]
        if not settings.local:
            runtime._tasks.append(
                asyncio.create_task(runtime._recheck_worker_keys(), name="polos-key-recheck")
            )
        return runtime

    async def close(self) -> None:
        """Stop loops, flush writes, close the database."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.retention is not None:  # retention
            await self.retention.stop()
        await self.schedule_loop.stop()
        await self.timers.stop()
        await self.gateway.stop()
        await self.batcher.stop()
        if self.tracing is not None:  # tracing: after the last writes, before the store
            await self.tracing.close()
        log.info("orchestrator stopping: %s", self.batcher.describe())
        await self.store.close()

    async def _listen(self) -> None:
        def on_done(payload: str) -> None:
            self.waiters.notify([Transition(i, "completed") for i in payload.split(",") if i])

        def on_cancel(payload: str) -> None:
            for worker_id, execution_id, reason in cancel_targets(payload):
                task = asyncio.ensure_future(
                    self.gateway.cancel_running(worker_id, execution_id, reason)
                )
                self._notified.add(task)
                task.add_done_callback(self._notified.discard)

        def on_event(payload: str) -> None:
            for item in payload.split(","):
                project_id, _, topic = item.partition("\t")
                if topic:
                    self.hub.notify(project_id, topic)

        def on_keys(payload: str) -> None:
            task = asyncio.ensure_future(self.keys_revoked([k for k in payload.split(",") if k]))
            self._notified.add(task)
            task.add_done_callback(self._notified.discard)

        def on_connect() -> None:
            self.gateway.wake()
            self.timers.wake()
            self.hub.notify_all()

        await self.store.listen(
            {
                WORK_CHANNEL: lambda _: self.gateway.wake(),
                DONE_CHANNEL: on_done,
                CANCEL_CHANNEL: on_cancel,
                EVENT_CHANNEL: on_event,
                KEYS_CHANNEL: on_keys,
            },
            on_connect=on_connect,
        )

    async def keys_revoked(self, key_ids: Sequence[str]) -> None:
        """Forget revoked keys and disconnect the workers that used them."""
        revoked = set(key_ids)
        self.auth.forget(revoked)
        for session in list(self.gateway.sessions.values()):
            if session.key_id in revoked and not session.closed:
                log.info("worker %s: its API key was revoked; disconnecting", session.worker_id)
                await session.send(Goodbye(reason="the worker's API key was revoked", fatal=True))
                session.closed = True
                with contextlib.suppress(Exception):
                    await session.connection.close(1008, "API key revoked")

    async def _recheck_worker_keys(self) -> None:
        # A key revoked straight in the database (polos-server keys revoke; SQLite has no
        # NOTIFY) still reaches the workers using it within a couple of seconds.
        while True:
            await asyncio.sleep(2.0)
            key_ids = {s.key_id for s in self.gateway.sessions.values() if s.key_id}
            try:
                gone = [k for k in key_ids if not await self.auth.still_valid(k)]
                if gone:
                    await self.keys_revoked(gone)
            except Exception as exc:
                log.warning("could not re-check worker keys: %s", exc)

    async def _sweep_waiters(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            waiting = self.waiters.ids()
            if not waiting:
                continue
            try:
                finished = await self.store.finished_among(waiting)
            except Exception as exc:
                log.warning("waiter sweep failed: %s", exc)
                continue
            self.waiters.notify([Transition(i, "completed") for i in finished])

    async def stop_running(self, targets: Sequence[tuple[str | None, str, str]]) -> None:
        """Tell the workers running these executions to stop them at once.

        ``targets``: (worker id, execution id, reason). A worker connected here gets a
        ``Cancel`` message; the others are reached through the orchestrator that holds
        their socket (PostgreSQL NOTIFY). Nothing is lost if a worker is unreachable:
        the execution is already finished in the database, so its writes are refused.
        """
        elsewhere: list[tuple[str, str, str]] = []
        for worker_id, execution_id, reason in targets:
            if worker_id is None:
                continue
            if not await self.gateway.cancel_running(worker_id, execution_id, reason):
                elsewhere.append((worker_id, execution_id, reason))
        if elsewhere:
            try:
                await self.store.notify_cancel(elsewhere)
            except Exception as exc:  # their writes are refused anyway (stale lease)
                log.warning("could not notify other orchestrators of cancels: %s", exc)

    def _on_transitions(self, transitions: Sequence[Transition]) -> None:
        self.waiters.notify(transitions)
        self.gateway.on_transitions(transitions)
        if self.tracing is not None:  # tracing
            self.tracing.on_transitions(transitions)

    async def project_exists(self, project_id: str) -> bool:
        """Whether the project exists (positive answers are cached)."""
        if project_id in self._projects:
            return True
        if await self.store.project_exists(project_id):
            self._projects.add(project_id)
            return True
        return False
