"""Size limits on what goes into the database, shared by the orchestrator and workers.

One place for the defaults, the environment variables and the error text. The
orchestrator enforces every limit (HTTP 413 ``payload_too_large``; on the worker
channel an ``Ack(code="rejected", value="payload_too_large")``); a worker reads the
same variables to refuse an oversized step output before sending it, so that the
error comes early. Sizes are those of the value's compact JSON text in UTF-8.

======================================  ===============================  =========
What                                    Variable                         Default
======================================  ===============================  =========
A request body (whole)                  ``POLOS_MAX_BODY_BYTES``         10 MiB
An execution's payload (invoke, batch,  ``POLOS_MAX_PAYLOAD_BYTES``      1 MiB
schedule, child invoke), initial state,
resume and suspend data
An event's data (publish, step publish,  ``POLOS_MAX_EVENT_BYTES``        1 MiB
live ``ctx.emit`` items)
A step's recorded output or state, an   ``POLOS_MAX_STEP_OUTPUT_BYTES``  4 MiB
execution's final result or state
======================================  ===============================  =========
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pydantic_core

from ._channel import ChildSpec, Complete, Emit, RecordStep, Wait

MIB = 1024 * 1024

MAX_BODY_BYTES_ENV = "POLOS_MAX_BODY_BYTES"
MAX_PAYLOAD_BYTES_ENV = "POLOS_MAX_PAYLOAD_BYTES"
MAX_EVENT_BYTES_ENV = "POLOS_MAX_EVENT_BYTES"
MAX_STEP_OUTPUT_BYTES_ENV = "POLOS_MAX_STEP_OUTPUT_BYTES"

DEFAULT_MAX_BODY_BYTES = 10 * MIB
DEFAULT_MAX_PAYLOAD_BYTES = 1 * MIB
DEFAULT_MAX_EVENT_BYTES = 1 * MIB
DEFAULT_MAX_STEP_OUTPUT_BYTES = 4 * MIB

MAX_DB_INT = 2**63 - 1
"""Largest integer a query or body parameter may carry: the databases' 64-bit integers
(SQLite raises OverflowError above it); request models cap such fields with ``le=``."""

PAYLOAD_TOO_LARGE = "payload_too_large"
"""Error code of every refusal for size (HTTP 413 body, rejected Ack ``value``)."""

PAYLOAD_TOO_LARGE_TYPE = "polos.PayloadTooLargeError"
"""``error.type`` of an execution failed because its result was over the limit."""


def json_size(value: Any) -> int:
    """Bytes of ``value`` as compact JSON (UTF-8), as the database stores it."""
    return len(pydantic_core.to_json(value))


def text_size(text: str) -> int:
    """Bytes of already-encoded JSON ``text`` in UTF-8 (no copy for ASCII-only text)."""
    return len(text) if text.isascii() else len(text.encode())


def too_large_message(what: str, size: int, limit: int, env: str) -> str:
    """``"event data is 2,345,678 bytes; the limit is 1,048,576 (POLOS_MAX_EVENT_BYTES)"``."""
    return f"{what} is {size:,} bytes; the limit is {limit:,} ({env})"


def _env_bytes(env: Mapping[str, str], name: str, default: int) -> int:
    raw = (env.get(name) or "").strip().replace("_", "")
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be a whole number of bytes, not {raw!r}") from None
    if value < 1:
        raise ValueError(f"{name} must be at least 1 byte, not {value}")
    return value


@dataclass(frozen=True, slots=True)
class SizeLimits:
    """The size limits in force (bytes)."""

    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES
    max_step_output_bytes: int = DEFAULT_MAX_STEP_OUTPUT_BYTES

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SizeLimits:
        """Limits from ``POLOS_MAX_PAYLOAD_BYTES``, ``POLOS_MAX_EVENT_BYTES`` and
        ``POLOS_MAX_STEP_OUTPUT_BYTES`` (defaults when unset)."""
        env = os.environ if env is None else env
        return cls(
            max_payload_bytes=_env_bytes(env, MAX_PAYLOAD_BYTES_ENV, DEFAULT_MAX_PAYLOAD_BYTES),
            max_event_bytes=_env_bytes(env, MAX_EVENT_BYTES_ENV, DEFAULT_MAX_EVENT_BYTES),
            max_step_output_bytes=_env_bytes(
                env, MAX_STEP_OUTPUT_BYTES_ENV, DEFAULT_MAX_STEP_OUTPUT_BYTES
            ),
        )

    def payload(self, what: str, size: int) -> str | None:
        """The refusal message when an execution payload of ``size`` bytes is too large."""
        if size <= self.max_payload_bytes:
            return None
        return too_large_message(what, size, self.max_payload_bytes, MAX_PAYLOAD_BYTES_ENV)

    def event(self, what: str, size: int) -> str | None:
        """The refusal message when event data of ``size`` bytes is too large."""
        if size <= self.max_event_bytes:
            return None
        return too_large_message(what, size, self.max_event_bytes, MAX_EVENT_BYTES_ENV)

    def step_output(self, what: str, size: int) -> str | None:
        """The refusal message when a step output / result of ``size`` bytes is too large."""
        if size <= self.max_step_output_bytes:
            return None
        return too_large_message(what, size, self.max_step_output_bytes, MAX_STEP_OUTPUT_BYTES_ENV)

    @property
    def smallest(self) -> int:
        """The smallest limit: a message no larger than this fits every limit."""
        return min(self.max_payload_bytes, self.max_event_bytes, self.max_step_output_bytes)


def oversized_write(
    limits: SizeLimits, message: RecordStep | Wait | Complete, size: int | None = None
) -> str | None:
    """Why a worker's write is over a limit (the first field found), or ``None``.

    ``size``: bytes of the whole message as received, when known; a message no larger
    than the smallest limit cannot hold an oversized field, and is not measured.
    """
    if size is not None and size <= limits.smallest:
        return None
    if isinstance(message, RecordStep):
        key = message.step.key
        return (
            limits.step_output(f"output of step {key!r}", json_size(message.step.output))
            or _state(
                limits, f"state after step {key!r}", message.step.has_state, message.step.state
            )
            or (
                limits.event(f"event data of step {key!r}", json_size(message.publish.data))
                if message.publish is not None
                else None
            )
            or _children(limits, key, message.children)
        )
    if isinstance(message, Wait):
        return (
            limits.payload(f"data of wait step {message.key!r}", json_size(message.wait.data))
            or _state(limits, f"state at step {message.key!r}", message.has_state, message.state)
            or _children(limits, message.key, message.children)
        )
    return limits.step_output(
        f"result of execution {message.execution_id}", json_size(message.result)
    ) or _state(
        limits, f"state of execution {message.execution_id}", message.has_state, message.state
    )


def _state(limits: SizeLimits, what: str, has_state: bool, state: Any) -> str | None:
    return limits.step_output(what, json_size(state)) if has_state else None


def _children(limits: SizeLimits, key: str, children: Sequence[ChildSpec]) -> str | None:
    for child in children:
        what = f"payload of child {child.execution_id} ({child.workflow_id}) of step {key!r}"
        refusal = limits.payload(what, json_size(child.payload))
        if refusal is None and child.has_state:
            refusal = limits.payload(
                f"initial state of child {child.execution_id}", json_size(child.initial_state)
            )
        if refusal is not None:
            return refusal
    return None


def oversized_emit(limits: SizeLimits, message: Emit, size: int | None = None) -> list[int]:
    """Positions of the live events of ``message`` whose data is over the event limit."""
    if size is not None and size <= limits.max_event_bytes:
        return []
    return [i for i, item in enumerate(message.items) if json_size(item) > limits.max_event_bytes]
