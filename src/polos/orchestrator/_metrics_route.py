"""``GET /metrics``: the Prometheus text exposition of one orchestrator.

The counters are kept up to date by the write path (:mod:`._metrics`); this route
adds the state read at scrape time: executions by status and queue depth (one
grouped count, :meth:`polos.storage.Store.metric_counts`), and the gateway's
sessions (connected workers, slots, dispatches). It is not part of the API (no
``/api/v1`` prefix, not in the OpenAPI schema). It needs an admin API key (Prometheus:
``authorization: {credentials: <key>}``), except in local mode.
"""

from __future__ import annotations

import logging
import time

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from polos.storage import MetricCounts

from ._runtime import OrchestratorRuntime
from ._session import authenticate

log = logging.getLogger("polos.orchestrator")

router = APIRouter()


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    """Every metric of this orchestrator in Prometheus' text format (admin keys: the
    figures cover every project)."""
    runtime: OrchestratorRuntime = request.app.state.runtime
    caller = await authenticate(request, runtime)
    if not caller.is_admin:
        from ._routes import problem_response

        return problem_response(403, "forbidden", "metrics cover every project: use an admin key")
    started = time.perf_counter()
    counts: MetricCounts | None
    try:
        counts = await runtime.store.metric_counts()
    except Exception as exc:  # still serve what this process knows; say the read failed
        log.warning("metrics: could not read counts from the database: %s", exc)
        counts = None
    read_seconds = time.perf_counter() - started
    # No await from here on: the snapshot and the rendering see one consistent state,
    # even with concurrent scrapes.
    families = state_families(runtime, counts)
    families.append(_gauge("polos_metrics_read_seconds", "Time the last scrape spent in the "
                           "database.", [((), read_seconds)]))  # fmt: skip
    runtime.metrics.snapshot.families = families
    return Response(generate_latest(runtime.metrics.registry), media_type=CONTENT_TYPE_LATEST)


def state_families(runtime: OrchestratorRuntime, counts: MetricCounts | None) -> list[Metric]:
    """The metric families read at scrape time (``counts``: ``None`` if the read failed)."""
    families: list[Metric] = [
        _gauge(
            "polos_database_up",
            "1 if the last scrape could read the database, else 0.",
            [((), 1.0 if counts is not None else 0.0)],
        )
    ]
    if counts is not None:
        families.append(
            _gauge(
                "polos_executions",
                "Executions stored, by project and status (from the shared database: every "
                "replica reports the same values).",
                [((p, s), n) for (p, s), n in sorted(counts.executions.items())],
                ["project", "status"],
            )
        )
        families.append(
            _gauge(
                "polos_queue_depth",
                "Executions not running, by project, queue ('' for none) and state: "
                "runnable (queued, due now), delayed (queued, in a retry backoff), waiting "
                "(parked at a wait step).",
                [
                    ((p, q or "", s), n)
                    for (p, q, s), n in sorted(counts.queues.items(), key=lambda kv: str(kv[0]))
                ],
                ["project", "queue", "state"],
            )
        )
    gateway = runtime.gateway
    workers: dict[str, int] = {}
    slots: dict[tuple[str, str], int] = {}
    for session in list(gateway.sessions.values()):
        if session.closed:
            continue
        workers[session.project_id] = workers.get(session.project_id, 0) + 1
        busy = (session.project_id, "busy")
        free = (session.project_id, "free")
        slots[busy] = slots.get(busy, 0) + len(session.running)
        slots[free] = slots.get(free, 0) + session.free_slots
    families.append(
        _gauge(
            "polos_workers_connected",
            "Workers connected to this orchestrator, by project.",
            [((p,), n) for p, n in sorted(workers.items())],
            ["project"],
        )
    )
    families.append(
        _gauge(
            "polos_worker_slots",
            "Execution slots of the workers connected here: busy (running an execution) "
            "or free (claimable now; a draining worker has none).",
            [((p, s), n) for (p, s), n in sorted(slots.items())],
            ["project", "state"],
        )
    )
    dispatches = CounterMetricFamily(
        "polos_dispatches", "Executions claimed and sent to a worker by this orchestrator."
    )
    dispatches.add_metric([], gateway.dispatched)
    families.append(dispatches)
    return families


def _gauge(
    name: str,
    documentation: str,
    samples: list[tuple[tuple[str, ...], float]],
    labels: list[str] | None = None,
) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=labels or [])
    for values, value in samples:
        family.add_metric(list(values), value)
    return family
