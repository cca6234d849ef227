"""Fuzz the public API with schemathesis, against a real orchestrator on each store.

The orchestrator's own OpenAPI document (``GET /api/v1/openapi.json``) drives the
generation: for every operation, schemathesis sends valid and invalid requests
(bodies, query strings, path parameters, headers) and checks each answer:

* ``not_a_server_error``: no 5xx, whatever the input;
* ``status_code_conformance``: the status is one the route documents;
* ``content_type_conformance``: the content type is the documented one;
* ``response_schema_conformance``: the body fits the documented model.

A worker (``workers/steps_worker.py``) is connected so that workflow routes
find registered workflows and some generated invocations really run.

Bounded and deterministic: ``MAX_EXAMPLES`` cases per operation and generation mode,
hypothesis derandomized (same cases on every run), no shrinking (the first failing
case is reported as generated, with a curl command to replay it).

Long polls and streams must not hang the run:

* ``GET /executions/{id}/result`` and ``POST /executions/wait`` are long polls: the
  ``timeout`` they are sent is forced to 0 (query parameter or body field), so they
  answer at once with the current state; their validation still gets fuzzed;
* ``GET /events/stream`` (server-sent events) never ends by design: excluded;
* the worker WebSocket (``/workers/connect``) is not in the OpenAPI document
  (``test_gateway.py`` covers it), nor are ``/metrics`` and the UI.

Authentication: when ``POLOS_FUZZ_API_KEY`` is set, every request carries
``Authorization: Bearer <key>`` (see :func:`auth_headers`, the one place to change
when API keys become mandatory for the servers tests start).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable

from polos.testing._processes import ServerProcess

from .conftest import Workers

schemathesis = pytest.importorskip("schemathesis")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

MAX_EXAMPLES = {"positive": 10, "negative": 6}
"""Cases per operation and generation mode: valid requests, and requests with one part made
invalid (negative cases of constrained string path parameters are slow to generate)."""

REQUEST_TIMEOUT_S = 10.0
"""Longest one request may take; a request still running after it is a failure."""

OPENAPI_PATH = "/api/v1/openapi.json"

EXCLUDED_PATHS = {
    # Server-sent events: the response never ends (it streams until the client leaves).
    "/api/v1/events/stream",
}

LONG_POLL_QUERY = {"/api/v1/executions/{execution_id}/result": "timeout"}
"""Operations whose query parameter makes them wait: forced to 0."""

LONG_POLL_BODY = {"/api/v1/executions/wait": "timeout"}
"""Operations whose body field makes them wait: forced to 0 when the body is an object."""

CHECK_NAMES = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
)


def auth_headers() -> dict[str, str]:
    """Headers every fuzzed request carries: a bearer key from ``POLOS_FUZZ_API_KEY``, if set.

    The hook for API keys: once the servers that tests start require a key, create one
    here (or export it) and every request of the fuzz run sends it.
    """
    key = os.environ.get("POLOS_FUZZ_API_KEY", "").strip()
    return {"Authorization": f"Bearer {key}"} if key else {}


def _checks() -> list[Callable[..., Any]]:
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    return [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
    ]


def _bound_long_polls(case: Any) -> None:
    """Make long polls answer at once (see the module docstring)."""
    path = case.operation.path
    if path in LONG_POLL_QUERY:
        case.query = {**(case.query or {}), LONG_POLL_QUERY[path]: 0}
    if path in LONG_POLL_BODY and isinstance(case.body, dict):
        case.body = {**case.body, LONG_POLL_BODY[path]: 0}


def _first_line(exc: BaseException, limit: int = 1500) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) <= limit else text[:limit] + " [...]"


def fuzz(base_url: str) -> tuple[dict[str, float], list[str]]:
    """Fuzz every operation of the live schema; ``({operation: seconds}, failure reports)``."""
    from schemathesis import GenerationMode

    headers = auth_headers()
    schema = schemathesis.openapi.from_url(
        base_url + OPENAPI_PATH, headers=headers, timeout=REQUEST_TIMEOUT_S
    )
    checks = _checks()
    session = requests.Session()  # one keep-alive connection, not one per request
    ran: dict[str, float] = {}
    failures: list[str] = []
    for result in schema.get_all_operations():
        try:
            operation = result.ok()
        except Exception as exc:  # the document itself is wrong: a failure too
            failures.append(f"--- invalid operation in the OpenAPI document\n{_first_line(exc)}")
            continue
        if operation.path in EXCLUDED_PATHS:
            continue
        started = time.monotonic()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            strategy = operation.as_strategy(generation_mode=mode)

            @settings(
                max_examples=MAX_EXAMPLES[mode.value],
                deadline=None,
                derandomize=True,
                database=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
                report_multiple_bugs=False,
            )
            @given(case=strategy)
            def run(case: Any) -> None:
                _bound_long_polls(case)
                response = case.call(
                    base_url=base_url, session=session, headers=headers, timeout=REQUEST_TIMEOUT_S
                )
                case.validate_response(response, checks=checks, headers=headers)

            try:
                run()
            except Unsatisfiable:
                # Negative mode: nothing of this operation can be made invalid (e.g. only
                # free-form string parameters), so there is no negative case to send.
                continue
            # schemathesis' FailureGroup is a BaseExceptionGroup: catch it, report, go on.
            except (Exception, BaseExceptionGroup) as exc:
                failures.append(f"--- {operation.label} ({mode.value})\n{_first_line(exc)}")
        ran[operation.label] = time.monotonic() - started
    session.close()
    return ran, failures


def test_fuzz_api(server: ServerProcess, start_worker: Workers, store_kind: str) -> None:
    """Zero 5xx, zero schema violations, over every operation of the OpenAPI document."""
    start_worker()
    started = time.monotonic()
    ran, failures = fuzz(server.url)
    elapsed = time.monotonic() - started
    slowest = sorted(ran.items(), key=lambda item: -item[1])[:5]
    print(f"fuzzed {len(ran)} operations on {store_kind} in {elapsed:.1f} s; slowest:")
    for label, seconds in slowest:
        print(f"  {seconds:5.1f} s  {label}")
    assert len(ran) >= 20, f"the schema lists too few operations: {ran}"
    assert not failures, (
        f"{len(failures)} failing operation(s) on {store_kind} "
        f"(checks: {', '.join(CHECK_NAMES)}):\n\n" + "\n\n".join(failures)
    )
