"""Worker sessions: the channel protocol, dispatch of tasks, leases and recovery.

Each connected worker has a :class:`WorkerSession`. The :class:`Gateway`

* registers workers (``Hello`` → ``Welcome``) and forgets them when their socket
  closes, requeueing what they ran at once (a killed process's socket closes
  immediately, so failover does not wait for a lease to lapse);
* applies their writes through the group-commit batcher and acknowledges them;
* writes their live events (``Emit``, fenced and in order: see :mod:`._emits`);
* dispatches queued executions to workers with free slots that serve the workflow;
* renews leases of live workers and requeues the executions of workers whose
  lease lapsed (hung or partitioned processes that kept their socket open).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import pydantic

from polos.errors import InvalidValueError
from polos.protocol import (
    CHANNEL_VERSION,
    Ack,
    Cancel,
    Complete,
    Drain,
    Emit,
    Fail,
    Goodbye,
    Heartbeat,
    Hello,
    RecordStep,
    Release,
    Task,
    Wait,
    WaitKind,
    Welcome,
    describe_problems,
    now_ms,
    worker_message_adapter,
)
from polos.storage import (
    STALE,
    ClaimOp,
    CompleteOp,
    FailOp,
    Granted,
    Published,
    RecordStepOp,
    Rejected,
    ReleaseOp,
    Store,
    Transition,
    WaitOp,
    WorkerIdInUse,
    WriteBatcher,
    dumps,
    loads,
    unit_random,
)

from ._emits import EmitWriter
from ._events import EventHub
from ._limits import emit_within_limits, refuse_write, text_size  # limits
from ._metrics import OrchestratorMetrics  # metrics
from ._settings import OrchestratorSettings

log = logging.getLogger("polos.orchestrator")


class Connection(Protocol):
    """The part of a WebSocket the gateway uses."""

    async def send_text(self, data: str) -> None:
        """Send one text message."""

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        """Close the connection."""


@dataclass(eq=False)
class WorkerSession:
    """One connected worker."""

    worker_id: str
    project_id: str
    connection: Connection
    max_concurrent: int
    workflows: frozenset[str]
    running: dict[str, int] = field(default_factory=dict)
    last_seen_ms: int = field(default_factory=now_ms)
    renewed_ms: int = 0
    closed: bool = False
    key_id: str | None = None
    """The API key the worker authenticated with (``None`` in local mode)."""
    _send_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def free_slots(self) -> int:
        """How many more executions this worker may run now."""
        return 0 if self.closed else max(0, self.max_concurrent - len(self.running))

    async def send(self, message: pydantic.BaseModel) -> None:
        """Send a message; a broken socket marks the session closed instead of raising."""
        if self.closed:
            return
        try:
            async with self._send_lock:
                await self.connection.send_text(message.model_dump_json())
        except Exception as exc:
            log.info("worker %s: send failed (%s)", self.worker_id, exc)
            self.closed = True


class Gateway:
    """Owns every worker session of this orchestrator."""

    def __init__(
        self,
        store: Store,
        batcher: WriteBatcher,
        settings: OrchestratorSettings,
        hub: EventHub | None = None,
        on_timer_change: Callable[[], None] = lambda: None,
        metrics: OrchestratorMetrics | None = None,
        on_transitions: Callable[[Sequence[Transition]], None] | None = None,
    ) -> None:
        self.store = store
        # Where the executions a lost worker leaves behind are announced: the runtime's
        # hook (long polls, the dispatcher, trace export), or just the dispatcher.
        self._announce = on_transitions or self.on_transitions
        # metrics: counters only (no I/O) on the paths below
        self.metrics = metrics if metrics is not None else OrchestratorMetrics()
        self.batcher = batcher
        self.settings = settings
        # Not `hub or EventHub()`: an EventHub with no subscribers is falsy (it has __len__).
        self.hub = hub if hub is not None else EventHub()
        self._on_timer_change = on_timer_change
        # Half a lease: a worker whose lease lapsed elsewhere was silent for a whole one.
        self.emits = EmitWriter(
            store, batcher, self.hub, verify_ms=settings.lease_ms // 2, wake=self.wake
        )
        self.sessions: dict[str, WorkerSession] = {}
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._handlers: set[asyncio.Task[None]] = set()
        self.dispatched = 0
        self.stopping = False

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Start dispatching and lease keeping."""
        # Workers of a previous orchestrator process get one lease of grace to reconnect.
        await self.store.extend_leases_of(self.settings.orchestrator_id, self.settings.lease_ms)
        self._tasks = [
            asyncio.create_task(self._dispatch_loop(), name="polos-dispatch"),
            asyncio.create_task(self._lease_loop(), name="polos-leases"),
        ]
        self.wake()

    def begin_shutdown(self) -> None:
        """This orchestrator is going away on purpose: sockets that close now are not worker deaths.

        Workers keep their leases and reconnect (to this orchestrator once it is back, or
        to another); their executions go on without being requeued or counted as crashes.
        """
        self.stopping = True

    async def stop(self) -> None:
        """Stop background loops and close every worker socket."""
        self.begin_shutdown()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.emits.stop()
        for session in list(self.sessions.values()):
            session.closed = True
            with contextlib.suppress(Exception):
                await session.connection.close(1001, "orchestrator shutting down")

    def wake(self) -> None:
        """Ask the dispatcher to look for work (new execution, freed slot, new worker)."""
        self._wake.set()

    def on_transitions(self, transitions: Sequence[Transition]) -> None:
        """Requeued executions are new work for the dispatcher."""
        self.metrics.transitions(transitions)  # metrics: finished executions
        if any(t.status == "queued" for t in transitions):
            self.wake()

    # ------------------------------------------------------------------ one connection

    async def serve(
        self,
        connection: Connection,
        receive: ReceiveText,
        project_id: str,
        *,
        key_id: str | None = None,
    ) -> None:
        """Run the channel protocol on one freshly accepted connection until it closes."""
        session: WorkerSession | None = None
        try:
            first = await receive()
            try:
                hello = worker_message_adapter.validate_json(first)
            except pydantic.ValidationError as exc:
                await self._refuse(
                    connection, f"invalid hello: {describe_problems(exc.errors(), 1)}"
                )
                return
            if not isinstance(hello, Hello):
                await self._refuse(connection, "the first message must be 'hello'")
                return
            if hello.version != CHANNEL_VERSION:
                await self._refuse(
                    connection,
                    f"channel version {hello.version} is not supported (this orchestrator speaks {CHANNEL_VERSION})",
                )
                return
            try:
                session = await self._register(connection, hello, project_id)
            except WorkerIdInUse as exc:
                await self._refuse(connection, str(exc))
                return
            session.key_id = key_id
            while True:
                text = await receive()
                session.last_seen_ms = now_ms()
                try:
                    message = worker_message_adapter.validate_json(text)
                except pydantic.ValidationError as exc:
                    log.warning("worker %s sent an invalid message: %s", session.worker_id, exc)
                    await session.send(
                        Goodbye(
                            reason=f"invalid message: {describe_problems(exc.errors(), 1)}",
                            fatal=True,
                        )
                    )
                    return
                if isinstance(message, Heartbeat):
                    continue
                if isinstance(message, Drain):
                    session.max_concurrent = 0
                    continue
                if isinstance(message, Hello):
                    await session.send(Goodbye(reason="duplicate hello", fatal=True))
                    return
                if isinstance(message, Emit):  # checked now, in socket order; written later
                    emit = emit_within_limits(
                        self.settings.limits, session.worker_id, message, text
                    )
                    if emit is not None:  # limits: oversized items are dropped (and logged)
                        self.emits.accept(session, emit)
                    continue
                handler = asyncio.create_task(self._handle_write(session, message, text_size(text)))
                self._handlers.add(handler)
                handler.add_done_callback(self._handlers.discard)
        except ConnectionClosed:
            pass
        finally:
            if session is not None:
                await self._disconnect(session)

    async def _refuse(self, connection: Connection, reason: str) -> None:
        with contextlib.suppress(Exception):
            await connection.send_text(Goodbye(reason=reason, fatal=True).model_dump_json())
            await connection.close(1008, reason[:120])

    async def _register(
        self, connection: Connection, hello: Hello, project_id: str
    ) -> WorkerSession:
        active = {lease.execution_id: lease.epoch for lease in hello.active}
        abandon = await self.store.register_worker(
            project_id=project_id,
            worker_id=hello.worker_id,
            name=hello.name,
            hostname=hello.hostname,
            pid=hello.pid,
            orchestrator_id=self.settings.orchestrator_id,
            max_concurrent=hello.max_concurrent,
            workflows=hello.workflows,
            active=active,
            lease_ms=self.settings.lease_ms,
            rate_limits=hello.rate_limits,
        )
        previous = self.sessions.get(hello.worker_id)
        if previous is not None:
            previous.closed = True
        session = WorkerSession(
            worker_id=hello.worker_id,
            project_id=project_id,
            connection=connection,
            max_concurrent=hello.max_concurrent,
            workflows=frozenset(w.id for w in hello.workflows),
            running={k: v for k, v in active.items() if k not in abandon},
        )
        self.sessions[hello.worker_id] = session
        await session.send(
            Welcome(
                worker_id=hello.worker_id,
                project_id=project_id,
                orchestrator_id=self.settings.orchestrator_id,
                heartbeat_ms=self.settings.heartbeat_ms,
                lease_ms=self.settings.lease_ms,
                abandon=abandon,
                features=["emit"],
            )
        )
        log.info(
            "worker %s connected (%s, %d slots, workflows: %s)",
            hello.worker_id,
            hello.name or hello.hostname,
            hello.max_concurrent,
            ", ".join(sorted(session.workflows)) or "none",
        )
        self.wake()
        return session

    async def _disconnect(self, session: WorkerSession) -> None:
        session.closed = True
        if self.sessions.get(session.worker_id) is not session:
            return  # it reconnected meanwhile; the new session owns its executions
        if self.stopping:
            return  # we are shutting down, the worker is not dead: it keeps its lease
        del self.sessions[session.worker_id]
        self.metrics.worker_disconnected()  # metrics
        try:
            transitions = await self.store.worker_gone(
                session.worker_id, orchestrator_id=self.settings.orchestrator_id
            )
        except Exception as exc:  # the lease sweep will requeue them later
            log.warning(
                "worker %s: could not requeue its executions now: %s",
                session.worker_id,
                exc,
                extra={"worker_id": session.worker_id},
            )
            return
        self.metrics.worker_lost(session.worker_id, "disconnected", transitions)  # metrics + logs
        if transitions:
            log.info(
                "worker %s disconnected; requeued %d execution(s)",
                session.worker_id,
                len(transitions),
                extra={"worker_id": session.worker_id},
            )
        self._announce(transitions)

    async def _handle_write(
        self,
        session: WorkerSession,
        message: RecordStep | Wait | Complete | Fail | Release | Heartbeat | Drain | Hello,
        size: int | None = None,  # limits: bytes of the message as received
    ) -> None:
        op = self._write_op(message)
        if op is None or isinstance(message, Heartbeat | Drain | Hello):  # pragma: no cover
            return
        if session.running.get(op.execution_id) != op.epoch:
            # A worker writes only to executions this orchestrator handed it under that
            # epoch: not another worker's, not another project's (security, not just fencing).
            await session.send(Ack(req=message.req, code="stale"))
            return
        refusal, op = refuse_write(self.settings.limits, session.worker_id, message, op, size)
        if refusal is not None and not isinstance(message, Complete):  # limits: fail the step
            await session.send(refusal)
            return
        if isinstance(op, WaitOp):
            op = dataclasses.replace(op, project_id=session.project_id)
        if not isinstance(op, RecordStepOp) or op.publish is not None:
            # The attempt may end here (or publish on a topic it emitted to): its live
            # events go in the log first.
            await self.emits.settled(op.execution_id)
        try:
            result = await self.batcher.submit(op)
        except InvalidValueError as exc:  # re-sending cannot help: fail the step instead
            result = Rejected(str(exc), code="invalid_value")
        except Exception as exc:
            log.warning("write from worker %s failed: %s", session.worker_id, exc)
            await session.send(Ack(req=message.req, code="error", message=str(exc)[:500]))
            return
        if isinstance(result, Rejected):
            await session.send(
                Ack(req=message.req, code="rejected", message=result.message, value=result.code)
            )
            return
        value = None
        if isinstance(result, Published):
            self.hub.notify(session.project_id, result.event.topic)
            self._on_timer_change()  # a trigger batch may have started its timeout
            if result.triggered:
                self.wake()
            value = result.event.model_dump(mode="json", exclude={"data"})
        if isinstance(op, WaitOp) and (
            op.spec.expires_at is not None or op.spec.kind == WaitKind.ACQUIRE
        ):
            self._on_timer_change()
        if isinstance(result, Granted):  # rate-limit units granted: the execution runs on
            value = {"granted": loads(result.output_json)}
        # A non-step write (or a refused one) means the execution left this worker: free its slot.
        left = not isinstance(op, RecordStepOp) or result == STALE
        if isinstance(result, Granted):
            left = False
        if left and session.running.pop(op.execution_id, None) is not None:
            self.wake()
        code = "stale" if result == STALE else "ok"
        if code == "ok" and isinstance(op, RecordStepOp):
            self.metrics.step_recorded(op.step)  # metrics: count + latency histogram
        if refusal is not None and code == "ok":  # limits: the result was refused, the run failed
            await session.send(refusal)
            return
        await session.send(Ack(req=message.req, code=code, value=value))

    @staticmethod
    def _write_op(
        message: RecordStep | Wait | Complete | Fail | Release | Heartbeat | Drain | Hello,
    ) -> RecordStepOp | WaitOp | CompleteOp | FailOp | ReleaseOp | None:
        if isinstance(message, RecordStep):
            return RecordStepOp(
                message.execution_id,
                message.epoch,
                message.step,
                message.publish,
                tuple(message.children),
            )
        if isinstance(message, Wait):
            return WaitOp(
                execution_id=message.execution_id,
                epoch=message.epoch,
                key=message.key,
                seq=message.seq,
                step_kind=message.kind,
                started_at=message.started_at,
                spec=message.wait,
                children=tuple(message.children),
                state_json=dumps(message.state) if message.has_state else None,
            )
        if isinstance(message, Complete):
            return CompleteOp(
                message.execution_id,
                message.epoch,
                dumps(message.result),
                dumps(message.state) if message.has_state else None,
            )
        if isinstance(message, Fail):
            return FailOp(
                message.execution_id,
                message.epoch,
                message.error,
                message.retryable,
                dumps(message.state) if message.has_state else None,
                unit_random(),
            )
        if isinstance(message, Release):
            return ReleaseOp(message.execution_id, message.epoch)
        return None

    # ------------------------------------------------------------------ dispatch

    async def _dispatch_loop(self) -> None:
        while True:
            if not self._wake.is_set():
                # Only an idle dispatcher needs to know when the next retry falls due.
                timeout = await self._next_timeout()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout)
            self._wake.clear()
            try:
                more = await self._dispatch_round()
            except Exception as exc:
                log.warning("dispatch failed: %s", exc)
                await asyncio.sleep(0.5)
                continue
            if more:
                self._wake.set()

    async def _next_timeout(self) -> float:
        # Executions waiting out a retry backoff become runnable on their own: sleep until
        # the earliest one (re-checking at least every second). Runnable-now executions
        # that were not claimed have no worker with room; a wake (new worker, freed slot)
        # brings them, so without a free slot there is nothing to compute.
        if not any(s.free_slots > 0 and s.workflows for s in self.sessions.values()):
            return 1.0
        now = now_ms()
        try:
            earliest = await self.store.next_available_at(now)
        except Exception:
            return 1.0
        if earliest is None:
            return 1.0
        return max(0.001, min(1.0, (earliest - now) / 1000))

    async def _dispatch_round(self) -> bool:
        """Claim work for every worker with free slots. True if a worker got a full batch."""
        sessions = [s for s in self.sessions.values() if s.free_slots > 0 and s.workflows]
        if not sessions:
            return False
        claims = [
            self.batcher.submit(ClaimOp(s.project_id, s.worker_id, s.free_slots)) for s in sessions
        ]
        results = await asyncio.gather(*claims, return_exceptions=True)
        more = False
        for session, result in zip(sessions, results, strict=True):
            if isinstance(result, BaseException) or not isinstance(result, list):
                if isinstance(result, BaseException):
                    log.warning("claim for worker %s failed: %s", session.worker_id, result)
                continue
            requested = session.free_slots
            for task in result:
                await self._deliver(session, task)
            if result and len(result) >= requested:
                more = True
        return more

    async def _deliver(self, session: WorkerSession, task: Task) -> None:
        session.running[task.execution_id] = task.epoch
        self.dispatched += 1
        self.metrics.log_claim(task, session.worker_id)  # logs: a debug line with its ids
        await session.send(task)
        if session.closed:
            # The socket closed between the claim and the send. If the worker has already
            # reconnected (a new session), its Hello could not list this execution, so no
            # disconnect handler would ever requeue it: hand it back now (fenced by epoch).
            session.running.pop(task.execution_id, None)
            try:
                await self.batcher.submit(ReleaseOp(task.execution_id, task.epoch))
            except Exception as exc:  # the lease sweep requeues it if the worker is gone
                log.warning(
                    "could not release undelivered %s: %s",
                    task.execution_id,
                    exc,
                    extra={"execution_id": task.execution_id, "worker_id": session.worker_id},
                )
            self.wake()

    # ------------------------------------------------------------------ cancellation

    async def cancel_running(self, worker_id: str | None, execution_id: str, reason: str) -> bool:
        """Tell the worker running ``execution_id`` to stop; False if it is not connected here."""
        if worker_id is None:
            return False
        session = self.sessions.get(worker_id)
        if session is None:
            return False
        session.running.pop(execution_id, None)
        log.info(
            "telling worker %s to stop %s: %s",
            worker_id,
            execution_id,
            reason,
            extra={"execution_id": execution_id, "worker_id": worker_id},
        )
        await session.send(Cancel(execution_id=execution_id, reason=reason))
        self.wake()
        return True

    # ------------------------------------------------------------------ leases

    async def _lease_loop(self) -> None:
        interval = max(0.05, self.settings.heartbeat_ms / 1000)
        while not self.stopping:
            await asyncio.sleep(interval)
            try:
                await self._renew_and_expire()
            except Exception as exc:
                log.warning("lease upkeep failed: %s", exc)

    async def _renew_and_expire(self) -> None:
        now = now_ms()
        # Only workers heard from recently keep their lease: a stopped process (SIGSTOP)
        # keeps its socket open but sends nothing, so its lease runs out.
        beats = {
            s.worker_id: s.last_seen_ms
            for s in self.sessions.values()
            if not s.closed and s.last_seen_ms > s.renewed_ms
        }
        await self.store.renew_leases(beats, self.settings.lease_ms)
        for worker_id, beat in beats.items():
            session = self.sessions.get(worker_id)
            if session is not None:
                session.renewed_ms = beat
        for worker_id in await self.store.expired_workers():
            session = self.sessions.pop(worker_id, None)
            transitions = await self.store.worker_gone(worker_id)
            self.metrics.worker_lost(worker_id, "lease_expired", transitions)  # metrics + logs
            log.warning(
                "worker %s missed its lease (silent since %s ms ago); requeued %d execution(s)",
                worker_id,
                now - session.last_seen_ms if session else "?",
                len(transitions),
                extra={"worker_id": worker_id},
            )
            if session is not None:
                session.closed = True
                with contextlib.suppress(Exception):
                    await session.connection.close(4000, "lease expired")
            self._announce(transitions)


class ReceiveText(Protocol):
    """Awaits the next text message; raises :class:`ConnectionClosed` when the socket closes."""

    async def __call__(self) -> str:
        """The next message."""


class ConnectionClosed(Exception):
    """The worker's socket closed."""
