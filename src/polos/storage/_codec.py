"""JSON encoding helpers and row → protocol model conversion."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

import pydantic_core

from polos.protocol import (
    AttemptInfo,
    ErrorInfo,
    Event,
    Execution,
    ExecutionStatus,
    StepKind,
    StepRecord,
    WaitInfo,
    WaitKind,
    now_ms,
)


def dumps(value: Any) -> str:
    """Encode a JSON-compatible value as compact JSON text."""
    return pydantic_core.to_json(value).decode()


def loads(text: str | bytes | None) -> Any:
    """Decode JSON text; ``None`` stays ``None``."""
    if text is None:
        return None
    return pydantic_core.from_json(text)


def new_id() -> str:
    """A time-ordered UUIDv7-shaped id (sorts by creation time, unique without coordination)."""
    ms = now_ms()
    rand = secrets.randbits(74)
    value = (
        (ms & ((1 << 48) - 1)) << 80
        | 0x7 << 76
        | (rand >> 62) << 64
        | 0b10 << 62
        | (rand & ((1 << 62) - 1))
    )
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def error_from_text(text: str | None) -> ErrorInfo | None:
    """Rebuild an :class:`ErrorInfo` stored as JSON text."""
    if text is None:
        return None
    return ErrorInfo.model_validate_json(text)


def step_from_row(row: Mapping[Any, Any]) -> StepRecord:
    """Convert a ``steps`` row to a :class:`StepRecord`."""
    state = row["state"]
    return StepRecord(
        key=row["key"],
        seq=row["seq"],
        kind=StepKind(row["kind"]),
        output=loads(row["output"]),
        output_type=row["output_type"],
        error=error_from_text(row["error"]),
        attempts=row["attempts"],
        started_at=row["started_at"],
        completed_at=row["completed_at"],
        has_state=state is not None,
        state=loads(state),
    )


def execution_from_row(row: Mapping[Any, Any]) -> Execution:
    """Convert an ``executions`` row to the API's :class:`Execution`."""
    return Execution(
        id=row["id"],
        project_id=row["project_id"],
        workflow_id=row["workflow_id"],
        status=ExecutionStatus(row["status"]),
        payload=loads(row["payload"]),
        result=loads(row["result"]),
        error=error_from_text(row["error"]),
        state=loads(row["state"]),
        attempt=row["attempt"],
        failed_attempts=row["failed_attempts"],
        crashed_attempts=row["crashed_attempts"],
        attempts=[AttemptInfo.model_validate(a) for a in loads(row["attempts"]) or []],
        worker_id=row["worker_id"],
        parent_id=row["parent_id"],
        root_id=row["root_id"],
        parent_step_key=row["parent_step_key"],
        trigger_event=loads(row["trigger_event"]),
        idempotency_key=row["idempotency_key"],
        queue=row["queue"],
        concurrency_key=row["concurrency_key"],
        priority=row["priority"],
        code_fingerprint=row["code_fingerprint"],
        code_changed=bool(row["code_changed"]),
        created_at=row["created_at"],
        started_at=row["started_at"],
        completed_at=row["completed_at"],
        updated_at=row["updated_at"],
        available_at=row["available_at"],
        cancelled_by=row["cancelled_by"],
        run_timeout_ms=row["run_timeout_ms"],
        timeout_counts_waits=bool(row["timeout_counts_waits"]),
        deadline_at=row["deadline_at"],
    )


def event_from_row(row: Mapping[Any, Any]) -> Event:
    """Convert an ``events`` row to an :class:`Event`."""
    return Event(
        id=row["id"],
        topic=row["topic"],
        seq=row["seq"],
        data=loads(row["data"]),
        created_at=row["created_at"],
        idempotency_key=row["idempotency_key"],
        source_execution_id=row["source_execution_id"],
    )


def wait_from_row(row: Mapping[Any, Any]) -> WaitInfo:
    """Convert a ``waits`` row to a :class:`WaitInfo`."""
    kind = WaitKind(row["kind"])
    return WaitInfo(
        execution_id=row["execution_id"],
        workflow_id=row["workflow_id"],
        root_id=row["root_id"],
        step_key=row["step_key"],
        kind=kind,
        data=loads(row["data"]) if kind == WaitKind.SUSPEND else None,
        topic=row["topic"],
        expires_at=row["expires_at"],
        pending_children=row["pending"] if kind == WaitKind.CHILD else None,
        created_at=row["created_at"],
    )
