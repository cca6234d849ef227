"""``Worker``: runs workflows for the orchestrator, from one process, outbound connections only."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from polos import _logs  # logs: ids of the running execution on every record
from polos.agents import Agent
from polos.client import PolosClient
from polos.errors import ConfigurationError, PayloadTooLargeError, WorkflowNotFoundError
from polos.protocol import (
    Ack,
    ActiveLease,
    Cancel,
    ChildSpec,
    Complete,
    Emit,
    ErrorInfo,
    Fail,
    Hello,
    PublishSpec,
    RecordStep,
    Release,
    StepRecord,
    Task,
    Wait,
    Welcome,
)
from polos.protocol._limits import (  # limits
    PAYLOAD_TOO_LARGE,
    PAYLOAD_TOO_LARGE_TYPE,
    SizeLimits,
    oversized_write,
)
from polos.sdk import (
    AttemptInput,
    AttemptOutcome,
    CancelSignal,
    LeaseLost,
    ParkRequest,
    RateLimit,
    Workflow,
    run_attempt,
)

from ._channel import Channel

log = logging.getLogger("polos.worker")

W = TypeVar("W", RecordStep, Wait)  # limits: a write checked for size before it is sent


EMIT_LINGER_S = 0.02
"""Longest a live event (``ctx.emit``) waits in the worker to be sent along with others."""

EMIT_BATCH = 64
"""Live events waiting to be sent go out at once when there are this many."""


class _Emitter:
    """Coalesces one attempt's ``ctx.emit`` calls into few :class:`Emit` messages.

    Coalescing lives here rather than in the SDK so that ``ctx.emit`` stays a plain
    call and in-memory recorders see every emit as made. Nagle-like: an emit after
    a quiet spell goes out at the end of the current event-loop turn (with whatever
    else that turn emitted), so sparse progress reports get no added latency; while
    emits keep coming (a model streaming tokens), they go out at most every
    :data:`EMIT_LINGER_S`, or at once when :data:`EMIT_BATCH` items wait. Each flush
    sends one message per topic (of at most :data:`EMIT_BATCH` items). Sends are
    chained, so messages leave in flush order, and :meth:`drain` returns once all
    were handed to the socket.
    """

    def __init__(self, channel: Channel, execution_id: str, epoch: int) -> None:
        self._channel = channel
        self._execution_id = execution_id
        self._epoch = epoch
        self._pending: dict[str, list[Any]] = {}
        self._count = 0
        self._timer: asyncio.TimerHandle | None = None
        self._last_flush = float("-inf")
        self._tail: asyncio.Future[None] | None = None
        self._closed = False
        self.dropped = 0

    def add(self, topic: str, items: list[Any]) -> None:
        """Queue ``items`` for ``topic``; they leave within :data:`EMIT_LINGER_S`."""
        if self._closed:  # e.g. a task the workflow left running after it returned
            self._drop(len(items), "the attempt is over")
            return
        if not items:
            return
        self._pending.setdefault(topic, []).extend(items)
        self._count += len(items)
        if self._count >= EMIT_BATCH:
            self.flush()
        elif self._timer is None:
            loop = asyncio.get_running_loop()
            delay = max(0.0, self._last_flush + EMIT_LINGER_S - loop.time())
            self._timer = loop.call_later(delay, self.flush)

    def flush(self) -> None:
        """Start sending what waits (without waiting for it)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._pending:
            return
        messages = [
            Emit(
                execution_id=self._execution_id,
                epoch=self._epoch,
                topic=topic,
                items=items[start : start + EMIT_BATCH],
            )
            for topic, items in self._pending.items()
            for start in range(0, len(items), EMIT_BATCH)
        ]
        self._pending, self._count = {}, 0
        self._last_flush = asyncio.get_running_loop().time()
        self._tail = asyncio.ensure_future(self._send(self._tail, messages))

    async def _send(self, previous: asyncio.Future[None] | None, messages: list[Emit]) -> None:
        if previous is not None:
            await asyncio.wait([previous])  # keep the order of flushes
        for message in messages:
            if not await self._channel.post(message):
                reason = (
                    "the orchestrator does not accept them (upgrade it)"
                    if self._channel.connected and "emit" not in self._channel.features
                    else "the connection to the orchestrator is down"
                )
                self._drop(len(message.items), reason)

    def _drop(self, count: int, reason: str) -> None:
        if not self.dropped:  # once per attempt: a stream of drops must not flood the log
            log.warning(
                "execution %s: live events (ctx.emit) dropped: %s", self._execution_id, reason
            )
        self.dropped += count

    async def drain(self) -> None:
        """Send what waits and return once every message of this attempt left (or was dropped)."""
        self.flush()
        if self._tail is not None:
            # Shielded: a cancelled attempt stops waiting, but what was emitted still goes out.
            await asyncio.shield(self._tail)

    def close(self) -> None:
        """The attempt is over: send what waits, drop later emits."""
        self.flush()
        self._closed = True


@dataclass(eq=False)
class _Running:
    task: Task
    job: asyncio.Task[None] | None = None
    cancel_reason: str | None = None
    signal: CancelSignal = field(default_factory=CancelSignal)


class _ChannelRecorder:
    """Makes step records durable through the channel, fenced by the attempt's epoch."""

    def _builder(self, record: StepRecord) -> Callable[[int], RecordStep]:
        def build(req: int) -> RecordStep:
            return RecordStep(
                req=req, execution_id=self._execution_id, epoch=self._epoch, step=record
            )

        return self._checked(build)

    def __init__(
        self, channel: Channel, execution_id: str, epoch: int, limits: SizeLimits | None = None
    ) -> None:
        self._channel = channel
        self._execution_id = execution_id
        self._epoch = epoch
        self._limits = limits or SizeLimits()  # limits: the orchestrator's, read from env
        self.emitter = _Emitter(channel, execution_id, epoch)

    def _checked(self, build: Callable[[int], W]) -> Callable[[int], W]:
        """``build``, after refusing a write over a size limit before it is sent (limits).

        The orchestrator refuses it anyway; checking here gives the same error without
        sending megabytes over the channel first.
        """
        refusal = oversized_write(self._limits, build(0))
        if refusal is not None:
            raise PayloadTooLargeError(413, PAYLOAD_TOO_LARGE, refusal)
        return build

    async def emit(self, topic: str, data: list[Any]) -> None:
        self.emitter.add(topic, data)

    async def record(self, records: list[StepRecord]) -> None:
        if len(records) == 1:  # the common case: one step, no gather
            acks = [await self._channel.request(self._builder(records[0]))]
        else:
            acks = await asyncio.gather(*(self._channel.request(self._builder(r)) for r in records))
        for ack in acks:
            self._check(ack)

    def _check(self, ack: Ack) -> None:
        if ack.code == "stale":
            raise LeaseLost(f"execution {self._execution_id} moved to another worker")
        if ack.code == "rejected":
            if ack.value == "workflow_not_found":
                raise WorkflowNotFoundError(404, "workflow_not_found", ack.message)
            if ack.value == PAYLOAD_TOO_LARGE:  # limits: the step fails, the workflow sees it
                raise PayloadTooLargeError(413, PAYLOAD_TOO_LARGE, ack.message)
            raise ConfigurationError(ack.message)

    async def record_effect(
        self,
        record: StepRecord,
        *,
        publish: PublishSpec | None = None,
        children: Sequence[ChildSpec] = (),
    ) -> Any:
        if publish is not None:  # live events emitted before it come first on the topic
            await self.emitter.drain()
        ack = await self._channel.request(
            self._checked(  # limits
                lambda req: RecordStep(
                    req=req,
                    execution_id=self._execution_id,
                    epoch=self._epoch,
                    step=record,
                    publish=publish,
                    children=list(children),
                )
            )
        )
        self._check(ack)
        return ack.value

    async def park(self, request: ParkRequest) -> Any:
        await self.emitter.drain()  # the attempt may end here: its live events first
        ack = await self._channel.request(
            self._checked(  # limits
                lambda req: Wait(
                    req=req,
                    execution_id=self._execution_id,
                    epoch=self._epoch,
                    key=request.key,
                    seq=request.seq,
                    kind=request.kind,
                    started_at=request.started_at,
                    wait=request.spec,
                    children=list(request.children),
                    has_state=request.has_state,
                    state=request.state,
                )
            )
        )
        self._check(ack)
        return ack.value


class Worker:
    """Runs workflows (and, later, agents and tools) for an orchestrator.

    Args:
        client: the :class:`~polos.PolosClient` whose URL, key and project to use.
        workflows: the workflows this worker serves.
        agents: agents this worker serves (they are workflows too).
        tools: tools this worker serves.
        max_concurrent: how many executions may run at once in this process.
        name: a label shown in listings (default: host and pid).
        shutdown_grace: seconds that in-flight executions get to finish on SIGTERM/SIGINT
            before they are handed back to the orchestrator.
        rate_limits: rate limits to define (or update) in the project, for
            ``ctx.step.acquire(name, units=...)``. Queues' rate limits are defined with
            their workflows and need not be listed.
    """

    def __init__(
        self,
        client: PolosClient | None = None,
        workflows: Iterable[Workflow[Any]] = (),
        agents: Iterable[Workflow[Any]] = (),
        tools: Iterable[Workflow[Any]] = (),
        *,
        max_concurrent: int = 100,
        name: str | None = None,
        shutdown_grace: float = 10.0,
        rate_limits: Iterable[RateLimit] = (),
    ) -> None:
        self.client = client or PolosClient()
        self.rate_limits = list(rate_limits)
        for rl in self.rate_limits:
            if not isinstance(rl, RateLimit):
                raise ConfigurationError(f"rate_limits takes RateLimit objects, not {rl!r}")
        self.workflows: dict[str, Workflow[Any]] = {}
        for wf in [*workflows, *agents, *tools]:
            if not isinstance(wf, Workflow):
                raise ConfigurationError(f"{wf!r} is not a workflow: decorate it with @workflow")
            if wf.id in self.workflows and self.workflows[wf.id] is not wf:
                raise ConfigurationError(f"two different workflows share the id {wf.id!r}")
            self.workflows[wf.id] = wf
            if isinstance(wf, Agent):
                wf.attach(self.client)  # session memory goes through this worker's client
        if max_concurrent < 1:
            raise ConfigurationError("max_concurrent must be at least 1")
        self.max_concurrent = max_concurrent
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.shutdown_grace = shutdown_grace
        self.worker_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:  # limits: the same POLOS_MAX_*_BYTES as the orchestrator's, checked before sending
            self.limits = SizeLimits.from_env()
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from None
        self._running: dict[str, _Running] = {}
        self._background: set[asyncio.Future[None]] = set()
        self._draining = False
        self._stop: asyncio.Event | None = None
        self._channel: Channel | None = None
        self.completed = 0
        self.parked = 0

    # ------------------------------------------------------------------ lifecycle

    async def run(self) -> None:
        """Serve until SIGINT/SIGTERM (or :meth:`stop`), then shut down gracefully."""
        if not logging.getLogger().handlers:
            _logs.setup_logging()  # logs: POLOS_LOG_FORMAT / POLOS_LOG_LEVEL
        self._stop = asyncio.Event()
        channel = Channel(
            api_urls=self.client.api_urls,
            project_id=self.client.project_id,
            api_key=self.client.api_key,
            make_hello=self._hello,
            on_task=self._on_task,
            on_cancel=self._on_cancel,
            on_welcome=self._on_welcome,
        )
        self._channel = channel
        self._install_signal_handlers()
        log.info(
            "worker %s serving %s (max %d at once); orchestrator %s",
            self.worker_id,
            ", ".join(sorted(self.workflows)) or "nothing",
            self.max_concurrent,
            self.client.api_url,
        )
        connection = asyncio.create_task(channel.run(), name="polos-channel")
        stopper = asyncio.create_task(self._stop.wait())
        try:
            done, _ = await asyncio.wait({connection, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if connection in done:
                connection.result()  # a fatal refusal: raise it
                return
            await self._shutdown()
        finally:
            stopper.cancel()
            await channel.close()
            connection.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await connection

    def stop(self) -> None:
        """Ask :meth:`run` to shut down gracefully."""
        if self._stop is not None:
            self._stop.set()

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.stop)

    async def _shutdown(self) -> None:
        channel = self._channel
        assert channel is not None
        self._draining = True
        log.info(
            "shutting down: %d execution(s) in flight, %.0f s grace",
            len(self._running),
            self.shutdown_grace,
        )
        await channel.drain()
        jobs = [r.job for r in self._running.values() if r.job is not None]
        if jobs:
            await asyncio.wait(jobs, timeout=self.shutdown_grace)
        leftovers = list(self._running.values())
        for running in leftovers:
            running.cancel_reason = "shutdown"
            if running.job is not None:
                running.job.cancel()
        if leftovers:
            await asyncio.wait([r.job for r in leftovers if r.job is not None], timeout=5)
        log.info("worker stopped")

    # ------------------------------------------------------------------ channel callbacks

    def _hello(self) -> Hello:
        return Hello(
            worker_id=self.worker_id,
            name=self.name,
            hostname=socket.gethostname(),
            pid=os.getpid(),
            max_concurrent=0 if self._draining else self.max_concurrent,
            workflows=[wf.spec() for wf in self.workflows.values()],
            rate_limits=[rl.spec() for rl in self.rate_limits],
            active=[
                ActiveLease(execution_id=k, epoch=r.task.epoch) for k, r in self._running.items()
            ],
        )

    def _on_welcome(self, welcome: Welcome) -> None:
        for execution_id in welcome.abandon:
            running = self._running.get(execution_id)
            if running is not None and running.job is not None:
                log.warning(
                    "execution %s moved to another worker while disconnected; dropping it",
                    execution_id,
                )
                running.cancel_reason = "abandoned"
                running.job.cancel()

    def _on_task(self, task: Task) -> None:
        if self._draining:
            release = asyncio.ensure_future(self._release(task))
            self._background.add(release)
            release.add_done_callback(self._background.discard)
            return
        previous = self._running.get(task.execution_id)
        if previous is not None and previous.job is not None:
            # A newer lease on the same execution: the old attempt is fenced off already.
            previous.cancel_reason = "superseded"
            previous.job.cancel()
        running = _Running(task)
        self._running[task.execution_id] = running
        running.job = asyncio.create_task(
            self._execute(running), name=f"polos-exec-{task.execution_id}"
        )

    def _on_cancel(self, message: Cancel) -> None:
        running = self._running.get(message.execution_id)
        if running is not None and running.job is not None:
            log.info(
                "execution %s cancelled: %s",
                message.execution_id,
                message.reason,
                extra={"execution_id": message.execution_id, "worker_id": self.worker_id},
            )
            running.cancel_reason = "cancelled"
            # The signal first: the step being awaited then raises ExecutionCancelled (and so
            # does every later step call, also from a synchronous workflow's thread).
            running.signal.cancel(message.reason)
            running.job.cancel()

    # ------------------------------------------------------------------ execution

    async def _release(self, task: Task) -> None:
        assert self._channel is not None
        await self._channel.request(
            lambda req: Release(req=req, execution_id=task.execution_id, epoch=task.epoch)
        )

    async def _execute(self, running: _Running) -> None:
        task = running.task
        channel = self._channel
        assert channel is not None
        emitter: _Emitter | None = None
        # logs: this task's records (and user code's, in steps and their threads) carry these
        log_ids = _logs.bind(
            execution_id=task.execution_id,
            workflow_id=task.workflow_id,
            worker_id=self.worker_id,
            attempt=task.attempt,
        )
        try:
            workflow = self.workflows.get(task.workflow_id)
            if workflow is None:  # the orchestrator only sends registered workflows; be safe anyway
                error = ErrorInfo(
                    type="polos.WorkflowNotFound",
                    message=f"worker does not serve {task.workflow_id!r}",
                )
                await channel.request(
                    lambda req: Fail(
                        req=req,
                        execution_id=task.execution_id,
                        epoch=task.epoch,
                        error=error,
                        retryable=False,
                    )
                )
                return
            recorder = _ChannelRecorder(channel, task.execution_id, task.epoch, self.limits)
            emitter = recorder.emitter
            outcome = await run_attempt(
                workflow,
                AttemptInput(
                    execution_id=task.execution_id,
                    attempt=task.attempt,
                    payload=task.payload,
                    history=task.history,
                    state=task.state,
                    has_state=task.has_state,
                    parent_id=task.parent_id,
                    root_id=task.root_id,
                    created_at=task.created_at,
                    code_fingerprint=task.code_fingerprint,
                    trigger=task.trigger,
                ),
                recorder,
                cancel=running.signal,
            )
            await emitter.drain()  # the orchestrator logs them before the attempt's end
            if outcome.parked:
                self.parked += 1  # the orchestrator holds the wait; this worker is done
                return
            if outcome.completed:
                complete = Complete(
                    req=0,
                    execution_id=task.execution_id,
                    epoch=task.epoch,
                    result=outcome.result,
                    has_state=outcome.has_state,
                    state=outcome.state,
                )
                refusal = oversized_write(self.limits, complete)  # limits: fail it, early
                if refusal is not None:
                    outcome = AttemptOutcome(
                        completed=False,
                        error=ErrorInfo(type=PAYLOAD_TOO_LARGE_TYPE, message=refusal),
                        retryable=False,  # a new attempt would replay to the same result
                    )
            if outcome.completed:
                ack = await channel.request(lambda req: complete.model_copy(update={"req": req}))
                if ack.code == "rejected":  # limits: the orchestrator failed the execution
                    log.warning("execution %s failed: %s", task.execution_id, ack.message)
                self.completed += 1
            else:
                assert outcome.error is not None
                log.info(
                    "execution %s (attempt %d) raised %s: %s",
                    task.execution_id,
                    task.attempt,
                    outcome.error.type,
                    outcome.error.message,
                )
                ack = await channel.request(
                    lambda req: Fail(
                        req=req,
                        execution_id=task.execution_id,
                        epoch=task.epoch,
                        error=outcome.error,
                        retryable=outcome.retryable,
                        has_state=outcome.has_state,
                        state=outcome.state,
                    )
                )
            if ack.code == "stale":
                log.warning(
                    "execution %s: result refused, the lease moved to another worker",
                    task.execution_id,
                )
        except LeaseLost as exc:
            log.warning("execution %s stopped: %s", task.execution_id, exc)
        except asyncio.CancelledError:
            if running.cancel_reason == "shutdown":
                # Hand it back at once so another worker picks it up without waiting for a lease.
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._release(task), timeout=3)
        except Exception:
            log.exception("execution %s: unexpected worker error", task.execution_id)
        finally:
            _logs.unbind(log_ids)
            if emitter is not None:
                emitter.close()
            if self._running.get(task.execution_id) is running:
                del self._running[task.execution_id]
