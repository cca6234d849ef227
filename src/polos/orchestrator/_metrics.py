"""Prometheus metrics of one orchestrator: counters fed by the write path, gauges read at scrape.

Two kinds of numbers, kept apart on purpose:

* **Events** (steps recorded, executions created and finished, crashed attempts,
  worker disconnects, write batches) are counted where they happen, by
  :class:`OrchestratorMetrics`'s hooks. The hooks only increment in-memory
  counters: no database call, no await, so they never slow a write.
* **State** (executions by status, queue depth, connected workers, slots,
  dispatches) is read when Prometheus scrapes ``/metrics`` (see
  :mod:`._metrics_route`), from one grouped count query and the gateway's sessions.

Every app gets its own :class:`~prometheus_client.CollectorRegistry` (never the
global one): tests start many apps in one process, and a process-wide registry would
refuse the second app's metrics as duplicates.

Counters are per orchestrator process (Prometheus sums replicas); the state gauges
come from the shared database, so every replica reports the same executions and
queue values (aggregate those with ``max``, not ``sum``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from polos.protocol import StepRecord, Task
from polos.storage import (
    BatchOutcome,
    ClaimOp,
    Created,
    CreateExecution,
    Fired,
    Published,
    RecordStepOp,
    Transition,
    WaitOp,
    WriteOp,
)

log = logging.getLogger("polos.orchestrator")

STEP_SECONDS_BUCKETS = (
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
    1800.0,
)  # fmt: skip
"""Step latency buckets: from a cache hit (1 ms) to a long model call or batch job (30 min)."""

BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
"""Ops per committed write batch (the batcher takes at most 512)."""

FINISHED = frozenset({"completed", "failed", "cancelled"})
"""Statuses an execution does not leave."""


class _Snapshot(Collector):
    """Serves the metric families built by the last scrape (state read at scrape time).

    A fresh list per scrape instead of labelled gauges: a project, queue or status
    that disappeared is simply absent, with no stale label left behind.
    """

    def __init__(self) -> None:
        self.families: list[Metric] = []

    def collect(self) -> Iterable[Metric]:
        """The families of the current scrape."""
        return list(self.families)


class OrchestratorMetrics:
    """The counters and histograms of one orchestrator, and their registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.step_seconds = Histogram(
            "polos_step_duration_seconds",
            "Time from a step's start to its completion (completed_at - started_at), "
            "as recorded by the worker, by step kind.",
            ["kind"],
            buckets=STEP_SECONDS_BUCKETS,
            registry=r,
        )
        self.steps = Counter(
            "polos_steps_recorded",
            "Step records applied (fenced writes that were accepted), by kind and outcome.",
            ["kind", "outcome"],
            registry=r,
        )
        self.created = Counter(
            "polos_executions_created",
            "Executions created by writes of this orchestrator, by source "
            "(api, event trigger, child of a step, trigger batch flushed by the timer).",
            ["source"],
            registry=r,
        )
        self.finished = Counter(
            "polos_executions_finished",
            "Executions that reached a final status through this orchestrator, by outcome.",
            ["outcome"],
            registry=r,
        )
        self.crashed = Counter(
            "polos_crashed_attempts",
            "Running executions taken back from a lost worker (requeued, or failed past "
            "max_recovery_attempts), by how the loss was noticed.",
            ["reason"],
            registry=r,
        )
        self.disconnects = Counter(
            "polos_worker_disconnects",
            "Worker sockets that closed while this orchestrator was running (any cause).",
            registry=r,
        )
        self.lease_expiries = Counter(
            "polos_lease_expiries",
            "Workers whose lease lapsed (silent but connected: hung, stopped or partitioned).",
            registry=r,
        )
        self.batch_size = Histogram(
            "polos_write_batch_size",
            "Operations per committed group-commit write batch.",
            buckets=BATCH_SIZE_BUCKETS,
            registry=r,
        )
        self.batch_seconds = Histogram(
            "polos_write_batch_duration_seconds",
            "Time to apply and commit one write batch.",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=r,
        )
        self.snapshot = _Snapshot()
        r.register(self.snapshot)

    # ------------------------------------------------------------------ hooks (hot path)

    def step_recorded(self, step: StepRecord) -> None:
        """A step record was applied: count it and observe its duration."""
        kind = step.kind.value
        self.steps.labels(kind, "error" if step.error is not None else "ok").inc()
        if step.started_at is not None and step.completed_at is not None:
            # Clock skew or a replayed record can make it negative: clamp, never drop.
            seconds = max(0, step.completed_at - step.started_at) / 1000
            self.step_seconds.labels(kind).observe(seconds)

    def transitions(self, transitions: Sequence[Transition]) -> None:
        """Status changes of a write batch or of a worker's loss: count the final ones."""
        for transition in transitions:
            if transition.status in FINISHED:
                self.finished.labels(transition.status).inc()

    def worker_lost(self, worker_id: str, reason: str, transitions: Sequence[Transition]) -> None:
        """A worker was given up on (``disconnected`` or ``lease_expired``) and what it ran
        was taken back: each transition is one crashed attempt, logged with its id."""
        if reason == "lease_expired":
            self.lease_expiries.inc()
        if transitions:
            self.crashed.labels(reason).inc(len(transitions))
        for transition in transitions:
            log.info(
                "execution %s %s: worker %s %s",
                transition.execution_id,
                "requeued" if transition.status == "queued" else f"ended {transition.status}",
                worker_id,
                "disconnected" if reason == "disconnected" else "missed its lease",
                extra={"execution_id": transition.execution_id, "worker_id": worker_id},
            )

    @staticmethod
    def log_claim(task: Task, worker_id: str) -> None:
        """A debug line per dispatched execution (lives here to keep the gateway small)."""
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "dispatched %s (attempt %d) to worker %s",
                task.execution_id,
                task.attempt,
                worker_id,
                extra={
                    "execution_id": task.execution_id,
                    "workflow_id": task.workflow_id,
                    "worker_id": worker_id,
                    "attempt": task.attempt,
                },
            )

    def worker_disconnected(self) -> None:
        """A worker's socket closed (a crash or a graceful exit: the socket cannot tell)."""
        self.disconnects.inc()

    def batch(self, ops: Sequence[WriteOp], outcome: BatchOutcome, seconds: float) -> None:
        """A write batch committed (called by the batcher; must never raise)."""
        try:
            self._batch(ops, outcome, seconds)
        except Exception as exc:  # a metrics bug must not stop the writer task
            log.debug("metrics: could not count a batch: %s", exc)

    def _batch(self, ops: Sequence[WriteOp], outcome: BatchOutcome, seconds: float) -> None:
        if not all(isinstance(op, ClaimOp) for op in ops):
            # Idle dispatch rounds are batches of claims that found nothing: they would
            # drown the size distribution of real writes in ones.
            self.batch_size.observe(len(ops))
            self.batch_seconds.observe(seconds)
        for op, result in zip(ops, outcome.results, strict=False):
            if isinstance(result, BaseException):
                continue
            if isinstance(op, CreateExecution) and isinstance(result, Created):
                if result.created:
                    self.created.labels("child" if op.parent_id else "api").inc()
            elif isinstance(result, Published) and result.triggered:
                self.created.labels("event").inc(len(result.triggered))
            elif isinstance(result, Fired) and result.started:
                self.created.labels("timer").inc(result.started)
            elif isinstance(op, RecordStepOp | WaitOp) and op.children and result != "stale":
                # Children are created with the step that starts them (idempotently: a
                # re-sent record after a reconnect would count them twice; rare).
                self.created.labels("child").inc(len(op.children))
