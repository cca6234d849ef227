"""Run timeouts: ending executions whose deadline passed.

How the clock works (the columns are set by plain SQL in the statements that
already touch the execution, so timeouts add no round trip to the hot paths):

* a claim sets ``claimed_at`` and ``deadline_at``: ``claimed_at + run_timeout_ms -
  run_elapsed_ms`` (running time only), or ``started_at + run_timeout_ms`` when the
  execution's waits count (``timeout_counts_waits``);
* an attempt that stops without finishing (parked at a wait, requeued after a crash
  or a release, failed and retried) adds ``now - claimed_at`` to ``run_elapsed_ms``
  and clears ``deadline_at`` -- unless waits count: then the absolute deadline
  stays, so the execution also times out while it waits or sits in the queue;
* finishing (complete, fail, cancel) clears ``deadline_at``.

The orchestrator's timer loop wakes at the earliest ``deadline_at`` (served by the
partial index ``ix_executions_deadline``) and runs :meth:`DeadlineWrites.sweep` in
its fire-due transaction. The sweep locks the rows it ends (PostgreSQL: ``FOR
UPDATE SKIP LOCKED``), so several orchestrators never time out one execution
twice, and a concurrent completion either wins (the row no longer matches) or
finds the execution failed.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from polos.protocol import AttemptInfo, ErrorInfo

from . import _tables as t
from ._codec import dumps, loads
from ._lifecycle import ACTIVE_STATUSES, RUNNING, attempt_stopped, cancel_descendants
from ._ops import Transition
from ._waits import WaitWrites

WORKFLOW_TIMEOUT_TYPE = "polos.WorkflowTimeoutError"
"""``error.type`` of an execution that ran out of its run timeout."""


@dataclass(slots=True)
class TimedOut:
    """What one sweep ended."""

    transitions: list[Transition] = field(default_factory=list)
    stop: list[tuple[str, str, str]] = field(default_factory=list)
    """Executions that were running on a worker: (worker id, execution id, reason)."""
    finished_children: list[tuple[str, str]] = field(default_factory=list)
    """(parent id, parent step key) of timed-out children whose parent may wait for them."""
    count: int = 0


def timeout_message(run_timeout_ms: int, counts_waits: bool) -> str:
    """Why an execution timed out, in words."""
    limit = f"run timeout of {run_timeout_ms / 1000:g} s exceeded"
    if counts_waits:
        return f"{limit} (counted from its start, time spent waiting included)"
    return f"{limit} (running time over all attempts; time parked at waits does not count)"


class DeadlineWrites:
    """The deadline sweep for one dialect."""

    def __init__(self, skip_locked: str) -> None:
        self._due = sa.text(
            "SELECT id, status, worker_id, epoch, attempt, attempts, run_timeout_ms, "
            "timeout_counts_waits, parent_id, parent_step_key FROM executions "
            "WHERE deadline_at IS NOT NULL AND deadline_at <= :now "
            # not an attempt claimed in this very batch (its task is about to be sent)
            "AND (claimed_at IS NULL OR claimed_at < :now) "
            "ORDER BY deadline_at LIMIT :n" + skip_locked
        )

    def sweep(self, conn: Connection, now: int, limit: int, skip: Collection[str]) -> TimedOut:
        """Fail every unfinished execution whose deadline passed (at most ``limit``).

        ``skip``: executions that other ops of the same batch write to (they were
        checked against their lease at the start of the batch); they time out in
        the next sweep, a moment later, if they are still unfinished then.
        """
        ex = t.executions
        out = TimedOut()
        for row in conn.execute(self._due, {"now": now, "n": limit}).mappings().all():
            eid = row["id"]
            if eid in skip:
                continue
            if row["status"] not in ACTIVE_STATUSES:  # a deadline nothing cleared: drop it
                conn.execute(ex.update().where(ex.c.id == eid).values(deadline_at=None))
                continue
            message = timeout_message(row["run_timeout_ms"] or 0, bool(row["timeout_counts_waits"]))
            error = ErrorInfo(type=WORKFLOW_TIMEOUT_TYPE, message=message)
            values = {
                **attempt_stopped(now, finished=True),
                "status": "failed",
                "error": error.model_dump_json(),
                "completed_at": now,
                "updated_at": now,
                "worker_id": None,
            }
            running = row["status"] == RUNNING
            stop = None
            if running:  # the attempt in progress ends here
                attempts = loads(row["attempts"]) or []
                info = AttemptInfo(
                    attempt=row["attempt"],
                    outcome="timed_out",
                    worker_id=row["worker_id"],
                    ended_at=now,
                    error=error,
                )
                attempts.append(info.model_dump(mode="json", exclude_none=True))
                values["attempts"] = dumps(attempts)
                if row["worker_id"] is not None:
                    stop = (row["worker_id"], eid, message.split(" (")[0])
            ended = conn.execute(
                ex.update()
                .where(ex.c.id == eid, ex.c.status == row["status"], ex.c.epoch == row["epoch"])
                .values(**values)
            )
            if ended.rowcount == 0:
                continue  # ended meanwhile by this sweep: cancelled with a timed-out ancestor
            out.transitions.append(Transition(eid, "failed"))
            out.count += 1
            if stop is not None:
                out.stop.append(stop)
            descendants = cancel_descendants(
                conn,
                eid,
                now,
                cancelled_by=f"ancestor {eid} timed out",
                message=f"cancelled: its ancestor {eid} ran out of its run timeout",
            )
            out.transitions.extend(Transition(d, "cancelled") for d, _ in descendants)
            out.stop.extend(
                (w, d, f"ancestor {eid} timed out") for d, w in descendants if w is not None
            )
            WaitWrites.drop(conn, [eid, *(d for d, _ in descendants)])
            if row["parent_id"] is not None and row["parent_step_key"]:
                out.finished_children.append((row["parent_id"], row["parent_step_key"]))
        return out
