"""Size limits on the public API and the worker channel (defaults: :mod:`polos.protocol._limits`).

HTTP: a payload or event over its limit is refused with 413 ``payload_too_large``
and a message naming the limit and its variable. Worker channel: a write with an
oversized field is rejected (``Ack(code="rejected", value="payload_too_large")``);
the workflow sees :class:`~polos.PayloadTooLargeError` at that step. A ``Complete``
whose result is over the limit cannot be handed back to the workflow (it has
returned): the execution ends ``failed`` with that error instead, so that it is
neither lost nor left running.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable
from typing import Any

from starlette.exceptions import HTTPException

from polos.protocol import (
    Ack,
    BatchInvokeRequest,
    Complete,
    Drain,
    Emit,
    ErrorInfo,
    Fail,
    Heartbeat,
    Hello,
    InvokeRequest,
    PublishRequest,
    RecordStep,
    Release,
    Wait,
)
from polos.protocol._limits import (
    MAX_DB_INT,
    PAYLOAD_TOO_LARGE,
    PAYLOAD_TOO_LARGE_TYPE,
    SizeLimits,
    json_size,
    oversized_emit,
    oversized_write,
    text_size,
)
from polos.storage import CompleteOp, FailOp, RecordStepOp, ReleaseOp, WaitOp, dumps, unit_random

__all__ = [
    "MAX_DB_INT",
    "PayloadTooLarge",
    "check_batch_invoke",
    "check_events",
    "check_invoke",
    "check_payload",
    "emit_within_limits",
    "refuse_write",
    "text_size",
]

log = logging.getLogger("polos.orchestrator")

WriteOp = RecordStepOp | WaitOp | CompleteOp | FailOp | ReleaseOp


class PayloadTooLarge(HTTPException):
    """413 ``payload_too_large`` (the app's HTTPException handler gives it the API's error shape).

    Not an ``ApiProblem``: the routes import this module, which must not import them back.
    """

    def __init__(self, message: str) -> None:
        super().__init__(413, message)


def _refuse(message: str | None) -> None:
    if message is not None:
        raise PayloadTooLarge(message)


def _payload(limits: SizeLimits, what: str, value: Any) -> None:
    _refuse(limits.payload(what, json_size(value)))


def check_invoke(limits: SizeLimits, body: InvokeRequest, where: str = "") -> None:
    """413 when an invocation's payload or initial state is over ``POLOS_MAX_PAYLOAD_BYTES``."""
    _payload(limits, f"{where}payload", body.payload)
    if body.initial_state is not None:
        _payload(limits, f"{where}initial_state", body.initial_state)


def check_batch_invoke(limits: SizeLimits, body: BatchInvokeRequest) -> None:
    """:func:`check_invoke` for every item (the message says which one)."""
    for i, item in enumerate(body.items):
        check_invoke(limits, item, f"items[{i}].")


def check_payload(limits: SizeLimits, what: str, value: Any) -> None:
    """413 when ``value`` (a schedule payload, resume data) is over ``POLOS_MAX_PAYLOAD_BYTES``."""
    _payload(limits, what, value)


def check_events(limits: SizeLimits, events: Iterable[PublishRequest], batch: bool) -> None:
    """413 when an event's data is over ``POLOS_MAX_EVENT_BYTES``."""
    for i, event in enumerate(events):
        what = f"events[{i}].data" if batch else "event data"
        _refuse(limits.event(what, json_size(event.data)))


def refuse_write(
    limits: SizeLimits,
    worker_id: str,
    message: RecordStep | Wait | Complete | Fail | Release | Heartbeat | Drain | Hello,
    op: WriteOp,
    size: int | None,
) -> tuple[Ack | None, WriteOp]:
    """The worker channel's check: ``(refusal, op to apply)``.

    ``RecordStep``/``Wait`` over a limit: a ``rejected`` Ack and nothing to apply (the
    workflow sees the error at that step). ``Complete`` over the limit: the same Ack,
    sent once the returned op (a non-retryable failure) is applied. ``Fail``: never
    refused (the attempt must end); a state over the limit is dropped.
    ``size``: bytes of the message as received (small messages are not measured).
    """
    if isinstance(message, Fail):
        assert isinstance(op, FailOp)
        if op.state_json is not None and limits.step_output("", text_size(op.state_json)):
            log.warning("%s: state of a failed attempt dropped (over the limit)", op.execution_id)
            op = dataclasses.replace(op, state_json=None)
        return None, op
    if not isinstance(message, RecordStep | Wait | Complete):
        return None, op
    refusal = oversized_write(limits, message, size)
    if refusal is None:
        return None, op
    log.warning(
        "worker %s: write refused: %s",
        worker_id,
        refusal,
        extra={"execution_id": message.execution_id, "worker_id": worker_id},
    )
    ack = Ack(req=message.req, code="rejected", message=refusal, value=PAYLOAD_TOO_LARGE)
    if isinstance(message, Complete):
        op = _completion_as_failure(limits, message, refusal)
    return ack, op


def _completion_as_failure(limits: SizeLimits, message: Complete, refusal: str) -> FailOp:
    # Not retried: a new attempt would replay the same steps to the same result. The state
    # goes along when it fits (a later manual retry starts from it).
    state_json = None
    if message.has_state:
        state_json = dumps(message.state)
        if limits.step_output("state", text_size(state_json)) is not None:
            state_json = None
    return FailOp(
        message.execution_id,
        message.epoch,
        ErrorInfo(type=PAYLOAD_TOO_LARGE_TYPE, message=refusal),
        False,
        state_json,
        unit_random(),
    )


def emit_within_limits(limits: SizeLimits, worker_id: str, message: Emit, text: str) -> Emit | None:
    """``message`` without its live events over ``POLOS_MAX_EVENT_BYTES`` (logged), or ``None``."""
    dropped = oversized_emit(limits, message, text_size(text))
    if not dropped:
        return message
    log.warning(
        "worker %s: %d live event(s) on %r dropped: over the limit of %s bytes (%s)",
        worker_id,
        len(dropped),
        message.topic,
        f"{limits.max_event_bytes:,}",
        "POLOS_MAX_EVENT_BYTES",
        extra={"execution_id": message.execution_id, "worker_id": worker_id},
    )
    skip = set(dropped)
    items = [item for i, item in enumerate(message.items) if i not in skip]
    return message.model_copy(update={"items": items}) if items else None
