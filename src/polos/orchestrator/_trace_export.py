"""OTLP export of derived spans, off the write path.

When ``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` is set,
each execution that reaches a terminal state (completed, failed, cancelled) is
exported once, by the orchestrator that applied that transition: its execution span
and its step spans, with the ids the trace API shows.

The write path only appends the execution's id to a bounded queue (dropped, with a
warning, when full). A background task reads finished executions in batches, derives
their spans and hands them to the OTLP/HTTP exporter on a thread of its own, so a slow
or unreachable collector delays nothing but the export. Remaining ids are exported and
the exporter is shut down when the orchestrator stops.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, Status, StatusCode, TraceFlags

from polos._version import __version__
from polos.protocol import TERMINAL_STATUSES, TraceSpan
from polos.storage import Store, Transition, executions_with_steps

from ._traces import execution_spans

log = logging.getLogger("polos.orchestrator.tracing")

SERVICE_NAME = "polos-orchestrator"
"""The ``service.name`` of exported spans, unless ``OTEL_SERVICE_NAME`` says otherwise."""

_SCOPE = InstrumentationScope("polos.orchestrator", __version__)
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_STATUS = {"ok": StatusCode.OK, "error": StatusCode.ERROR, "unset": StatusCode.UNSET}
_WARN_EVERY_S = 10.0


def _env_int(env: Mapping[str, str], name: str, default: int) -> int:
    try:
        value = int(env.get(name, ""))
    except ValueError:
        return default
    return value if value > 0 else default


def export_configured(env: Mapping[str, str]) -> bool:
    """Whether the OTel environment asks for a trace export (standard variable semantics)."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if env.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() == "none":
        return False
    return bool(
        env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    )


def make_resource(env: Mapping[str, str], orchestrator_id: str) -> Resource:
    """The exporting process: ``OTEL_SERVICE_NAME``/``OTEL_RESOURCE_ATTRIBUTES`` win."""
    attrs: dict[str, str] = {"service.version": __version__}
    if orchestrator_id:
        attrs["service.instance.id"] = orchestrator_id
    named = env.get("OTEL_SERVICE_NAME") or "service.name=" in env.get(
        "OTEL_RESOURCE_ATTRIBUTES", ""
    )
    if not named:
        attrs["service.name"] = SERVICE_NAME
    return Resource.create(attrs)


def _context(trace_id: str, span_id: str) -> SpanContext:
    return SpanContext(int(trace_id, 16), int(span_id, 16), is_remote=False, trace_flags=_SAMPLED)


def readable_span(span: TraceSpan, resource: Resource) -> ReadableSpan:
    """The SDK span of a derived, ended span (``end_ms`` set): same ids, times in ns."""
    assert span.end_ms is not None, "only ended spans are exported"
    parent = (
        _context(span.trace_id, span.parent_span_id) if span.parent_span_id is not None else None
    )
    return ReadableSpan(
        name=span.name,
        context=_context(span.trace_id, span.span_id),
        parent=parent,
        resource=resource,
        attributes={"polos.span.kind": span.kind, **span.attributes},
        status=Status(_STATUS[span.status], span.status_message),
        start_time=span.start_ms * 1_000_000,
        end_time=max(span.end_ms, span.start_ms) * 1_000_000,
        instrumentation_scope=_SCOPE,
    )


class TraceExporter:
    """Exports the spans of executions as they finish (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        exporter: SpanExporter,
        resource: Resource,
        *,
        max_queue: int = 4096,
        max_batch: int = 512,
        delay_s: float = 0.5,
    ) -> None:
        self._store = store
        self._exporter = exporter
        self._resource = resource
        self._max_queue = max_queue
        self._max_batch = max_batch
        self._delay_s = delay_s
        self._queue: collections.deque[str] = collections.deque()
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # One thread: the exporter's HTTP calls run there, one batch at a time.
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="polos-otlp")
        self._dropped = 0
        self._warned_at = 0.0
        self.exported_spans = 0
        """Spans handed to the exporter successfully (for tests and logs)."""

    @classmethod
    def from_env(
        cls, store: Store, orchestrator_id: str, env: Mapping[str, str] | None = None
    ) -> TraceExporter | None:
        """An exporter configured by the standard OTel variables, or ``None`` if not asked for.

        ``OTLPSpanExporter`` reads the endpoint, headers, timeout, compression and
        certificates itself; ``OTEL_BSP_MAX_QUEUE_SIZE`` (finished executions waiting),
        ``OTEL_BSP_MAX_EXPORT_BATCH_SIZE`` (spans per request) and
        ``OTEL_BSP_SCHEDULE_DELAY`` (ms between batches; default 500 here) apply too.
        """
        env = os.environ if env is None else env
        if not export_configured(env):
            return None
        protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get(
            "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
        )
        if protocol != "http/protobuf":
            log.warning("OTLP protocol %r is not supported: exporting with http/protobuf", protocol)
        # Imported here: the exporter pulls in requests and protobuf, needed only when on.
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return cls(
            store,
            OTLPSpanExporter(),
            make_resource(env, orchestrator_id),
            max_queue=_env_int(env, "OTEL_BSP_MAX_QUEUE_SIZE", 4096),
            max_batch=_env_int(env, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512),
            delay_s=_env_int(env, "OTEL_BSP_SCHEDULE_DELAY", 500) / 1000,
        )

    def start(self) -> None:
        """Start the background export task."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="polos-trace-export")
            log.info("exporting traces over OTLP/HTTP")

    def on_transitions(self, transitions: Sequence[Transition]) -> None:
        """Queue the executions that just finished (called on the write path: no I/O here)."""
        for transition in transitions:
            if transition.status not in TERMINAL_STATUSES:
                continue
            if len(self._queue) >= self._max_queue:
                self._drop(1)
                continue
            self._queue.append(transition.execution_id)
            self._wake.set()

    def _drop(self, count: int) -> None:
        self._dropped += count
        now = time.monotonic()
        if now - self._warned_at >= _WARN_EVERY_S:
            log.warning(
                "trace export queue full (%d executions): %d finished executions not exported",
                self._max_queue,
                self._dropped,
            )
            self._warned_at, self._dropped = now, 0

    async def _run(self) -> None:
        while True:
            if not self._queue:
                if self._stopping.is_set():
                    return
                self._wake.clear()
                waiter = asyncio.ensure_future(self._wake.wait())
                stopper = asyncio.ensure_future(self._stopping.wait())
                await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                stopper.cancel()
                if not self._stopping.is_set():
                    # Let a batch gather: one read and one request for many executions.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stopping.wait(), self._delay_s)
            while self._queue:
                count = min(len(self._queue), self._max_batch)
                ids = list(dict.fromkeys(self._queue.popleft() for _ in range(count)))
                try:
                    await self._export(ids)
                except Exception as exc:  # never let one bad batch stop the exports
                    log.warning("trace export of %d executions failed: %s", len(ids), exc)

    async def _export(self, ids: list[str]) -> None:
        rows = await executions_with_steps(self._store, ids)
        spans: list[ReadableSpan] = []
        for execution in rows.executions:
            if not execution.status.is_terminal:  # e.g. retried since: exported when it ends
                continue
            for span in execution_spans(execution, rows.steps.get(execution.id, [])):
                if span.end_ms is not None:
                    spans.append(readable_span(span, self._resource))
        loop = asyncio.get_running_loop()
        for start in range(0, len(spans), self._max_batch):
            chunk = spans[start : start + self._max_batch]
            await loop.run_in_executor(self._pool, self._send, chunk)

    def _send(self, spans: list[ReadableSpan]) -> None:
        """On the export thread: one OTLP request; failures are logged, never raised."""
        try:
            result = self._exporter.export(spans)
        except Exception as exc:
            log.warning("OTLP export of %d spans failed: %s", len(spans), exc)
            return
        if result == SpanExportResult.SUCCESS:
            self.exported_spans += len(spans)
        else:
            log.warning("OTLP export of %d spans failed (see the exporter's log)", len(spans))

    async def close(self, timeout: float = 5.0) -> None:
        """Export what is queued (for at most ``timeout`` s), then shut the exporter down."""
        self._stopping.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout)
            except TimeoutError:
                log.warning(
                    "trace export: %d executions not exported at shutdown", len(self._queue)
                )
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            except Exception as exc:
                log.warning("trace export stopped with an error: %s", exc)
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(loop.run_in_executor(self._pool, self._exporter.shutdown), 2.0)
        except Exception as exc:
            log.warning("OTLP exporter shutdown failed: %s", exc)
        self._pool.shutdown(wait=False)
