"""``ctx.step.acquire``: rate-limit units taken from inside a step.

An acquire is a wait of kind ``acquire``. Granted at once when the limit has room
(the step records the grant), it parks otherwise, holding no worker slot, and
:meth:`AcquireWaits.fire` retries it when units come free (the wait's
``expires_at`` is the next moment they can), until its own deadline.
"""

from __future__ import annotations

from typing import Any

import pydantic
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from polos.protocol import AcquireSpec, ErrorInfo, WaitKind

from ._codec import dumps, loads
from ._flow import FlowLocks, FlowWrites, set_rate_limit
from ._ops import Transition, WaitOp
from ._waits import WaitWrites


def is_acquire(op: WaitOp) -> bool:
    """Whether a wait op is ``ctx.step.acquire``."""
    return op.spec.kind == WaitKind.ACQUIRE


def acquire_spec(data: Any) -> AcquireSpec | None:
    """The validated request of an acquire wait (None if a worker sent nonsense)."""
    try:
        return AcquireSpec.model_validate(data)
    except pydantic.ValidationError:
        return None


def acquired_limit(op: WaitOp) -> tuple[str, str]:
    """(project, rate-limit name) an acquire op needs locked."""
    spec = acquire_spec(op.spec.data)
    return (op.project_id, spec.limit if spec is not None else "")


def grant_output(spec: AcquireSpec, now: int) -> str:
    """The recorded output of a granted acquire step."""
    return dumps({"limit": spec.limit, "units": spec.units, "key": spec.key, "granted_at": now})


_DUE_ACQUIRES = "SELECT * FROM waits WHERE kind = 'acquire' AND expires_at <= :now ORDER BY expires_at, created_at LIMIT :n"
_RETRY_LATER = sa.text(
    "UPDATE waits SET expires_at = :at WHERE execution_id = :eid AND step_key = :key"
)


class AcquireWaits:
    """Parked ``ctx.step.acquire`` steps: granted when their rate limit has room again."""

    def __init__(self, flow: FlowWrites, skip_locked: str) -> None:
        self._flow = flow
        self._due = sa.text(_DUE_ACQUIRES + skip_locked)

    def define(
        self, conn: Connection, locks: FlowLocks, project_id: str, spec: AcquireSpec, now: int
    ) -> None:
        """``acquire(RateLimit(...))``: create or update the limit and use it in this batch."""
        if spec.define is None:
            return
        set_rate_limit(conn, project_id, spec.define, now)
        locks.limits[(project_id, spec.limit)] = {
            "name": spec.limit,
            "max_units": spec.define.limit,
            "period_ms": spec.define.period_ms,
        }
        locks.windows = {
            k: w for k, w in locks.windows.items() if k[:2] != (project_id, spec.limit)
        }

    def fire(self, conn: Connection, now: int, limit: int) -> list[Transition]:
        """Try every due acquire wait again: grant it, time it out, or push it back."""
        rows = conn.execute(self._due, {"now": now, "n": limit}).mappings().all()
        if not rows:
            return []
        specs = {(r["execution_id"], r["step_key"]): acquire_spec(loads(r["data"])) for r in rows}
        names = [
            (r["project_id"], s.limit)
            for r in rows
            if (s := specs[(r["execution_id"], r["step_key"])])
        ]
        locks = self._flow.prepare(conn, (), names, now)
        transitions = []
        for row in rows:
            spec = specs[(row["execution_id"], row["step_key"])]
            if spec is None:
                continue
            denied = self._flow.acquire(
                conn,
                locks,
                row["project_id"],
                spec.limit,
                spec.key,
                spec.units,
                row["execution_id"],
                now,
            )
            ended: Transition | None = None
            if denied is None:
                ended = WaitWrites.end(conn, row, now, output_json=grant_output(spec, now))
            elif (spec.deadline is not None and now >= spec.deadline) or denied.retry_at is None:
                waited = max(0, now - row["started_at"]) / 1000
                error = ErrorInfo(
                    type="polos.WaitTimeoutError",
                    message=f"step {row['step_key']!r} timed out after {waited:g} s waiting for "
                    f"{spec.units} unit(s) of rate limit {spec.limit!r}",
                )
                if denied.retry_at is None:  # the limit was removed or shrunk meanwhile
                    error = ErrorInfo(type="polos.ConfigurationError", message=denied.message)
                ended = WaitWrites.end(conn, row, now, error=error)
            else:
                at = (
                    denied.retry_at
                    if spec.deadline is None
                    else min(denied.retry_at, spec.deadline)
                )
                conn.execute(
                    _RETRY_LATER, {"at": at, "eid": row["execution_id"], "key": row["step_key"]}
                )
            if ended is not None:
                transitions.append(ended)
        return transitions
