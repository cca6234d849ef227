"""Parked executions: registering waits and ending them (resume, event, timer, children).

A wait is one row of ``waits``, keyed by the execution and the wait step's key.
While it exists the execution is ``waiting`` and holds no worker. Ending a
wait, in one transaction: record the wait step's outcome in ``steps`` (output,
or a timeout error), delete the row, and queue the execution again; its next
attempt replays up to the wait step, which now returns the recorded outcome.

Every way of ending a wait first locks the row (PostgreSQL: ``FOR UPDATE``; the
timer sweep uses ``SKIP LOCKED``) and deletes it, so a wait ends exactly once
even when a resume, an event and a timeout race on several orchestrators.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from polos.protocol import ErrorInfo, Event, StepKind, WaitKind

from . import _tables as t
from ._codec import dumps, loads
from ._ops import Transition, WaitOp

QUEUED = "queued"
WAITING = "waiting"
TERMINAL = ("completed", "failed", "cancelled")

_INSERT_WAIT_STEP = sa.text(
    "INSERT INTO steps (execution_id, key, seq, kind, output, output_type, error, state, "
    "attempts, started_at, completed_at) VALUES (:execution_id, :key, :seq, :kind, :output, "
    "NULL, :error, :state, 1, :started_at, :now) ON CONFLICT DO NOTHING"
)
_WAKE = sa.text(
    "UPDATE executions SET status = 'queued', available_at = :now, updated_at = :now "
    "WHERE id = :eid AND status = 'waiting'"
)
_DELETE_WAIT = sa.text("DELETE FROM waits WHERE execution_id = :eid AND step_key = :key")
# Parking ends the running attempt: its running time goes to run_elapsed_ms and its
# deadline is cleared, unless waits count against the run timeout (see _lifecycle).
_PARK = sa.text(
    "UPDATE executions SET status = 'waiting', worker_id = NULL, updated_at = :now, "
    "state = COALESCE(:state, state), "
    "run_elapsed_ms = run_elapsed_ms + :now - COALESCE(claimed_at, :now), claimed_at = NULL, "
    "deadline_at = CASE WHEN timeout_counts_waits THEN deadline_at ELSE NULL END "
    "WHERE id = :eid AND epoch = :epoch AND status = 'running'"
)
_INSERT_WAIT = sa.text(
    "INSERT INTO waits (execution_id, step_key, project_id, workflow_id, root_id, kind, "
    "step_kind, seq, topic, after_seq, data, state, expires_at, pending, started_at, "
    "created_at) VALUES (:execution_id, :step_key, :project_id, :workflow_id, :root_id, "
    ":kind, :step_kind, :seq, :topic, :after_seq, :data, :state, :expires_at, :pending, "
    ":started_at, :now) ON CONFLICT DO NOTHING"
)
# A no-op upsert: creates the topic if needed, locks its row (PostgreSQL) and returns
# its last seq. Publishers bump the same row, so a wait registered here sees every
# event published after this statement, and none before.
_WATERMARK = sa.text(
    "INSERT INTO topics (project_id, name, last_seq, created_at) VALUES (:p, :t, 0, :now) "
    "ON CONFLICT (project_id, name) DO UPDATE SET last_seq = topics.last_seq RETURNING last_seq"
)
_CHILD_DONE = sa.text(
    "UPDATE waits SET pending = pending - :n WHERE execution_id = :eid AND step_key = :key "
    "AND kind = 'child' RETURNING execution_id, step_key, step_kind, seq, data, state, "
    "started_at, pending"
)


def watermark(conn: Connection, project_id: str, topic: str, now: int) -> int:
    """The topic's last seq (0 for a new topic), with its row locked until commit."""
    return int(conn.execute(_WATERMARK, {"p": project_id, "t": topic, "now": now}).scalar_one())


def base_key(key: str) -> str:
    """A step key without its occurrence suffix (``approval#2`` → ``approval``)."""
    return key.split("#", 1)[0]


def event_envelope(event: Event, data_json: str | None) -> str:
    """The JSON of an event with its data, built without decoding the data."""
    meta = dumps(
        {"id": event.id, "topic": event.topic, "seq": event.seq, "created_at": event.created_at}
    )
    return f'{meta[:-1]},"data":{data_json if data_json is not None else "null"}}}'


class WaitWrites:
    """Statements on ``waits`` for one dialect."""

    def __init__(self, lock_rows: str, skip_locked: str) -> None:
        self._by_topic = sa.text(
            "SELECT * FROM waits WHERE project_id = :p AND topic = :t AND kind = 'event'"
            + lock_rows
        )
        self._of_execution = sa.text("SELECT * FROM waits WHERE execution_id = :eid" + lock_rows)
        self._due = sa.text(
            "SELECT * FROM waits WHERE expires_at IS NOT NULL AND expires_at <= :now "
            "AND kind <> 'acquire' ORDER BY expires_at LIMIT :n" + skip_locked
        )

    # ------------------------------------------------------------------ register

    def register(
        self,
        conn: Connection,
        op: WaitOp,
        lease: Mapping[Any, Any],
        now: int,
    ) -> bool:
        """Park the execution (its lease was checked by the caller). False if it was not running."""
        spec = op.spec
        after_seq = None
        if spec.kind == WaitKind.EVENT:
            assert spec.topic is not None
            after_seq = watermark(conn, lease["project_id"], spec.topic, now)
        parked = conn.execute(
            _PARK, {"eid": op.execution_id, "epoch": op.epoch, "state": op.state_json, "now": now}
        )
        if parked.rowcount == 0:
            return False
        conn.execute(
            _INSERT_WAIT,
            {
                "execution_id": op.execution_id,
                "step_key": op.key,
                "project_id": lease["project_id"],
                "workflow_id": lease["workflow_id"],
                "root_id": lease["root_id"],
                "kind": spec.kind.value,
                "step_kind": op.step_kind.value,
                "seq": op.seq,
                "topic": spec.topic,
                "after_seq": after_seq,
                "data": dumps(spec.data),
                "state": op.state_json,
                "expires_at": spec.expires_at,
                "pending": len(op.children) if spec.kind == WaitKind.CHILD else None,
                "started_at": op.started_at,
                "now": now,
            },
        )
        return True

    # ------------------------------------------------------------------ end a wait

    @staticmethod
    def end(
        conn: Connection,
        row: Mapping[Any, Any],
        now: int,
        *,
        output_json: str | None = None,
        error: ErrorInfo | None = None,
    ) -> Transition | None:
        """End one (locked) wait with an output or an error and queue its execution."""
        conn.execute(_DELETE_WAIT, {"eid": row["execution_id"], "key": row["step_key"]})
        woken = conn.execute(_WAKE, {"eid": row["execution_id"], "now": now})
        if woken.rowcount == 0:
            return None  # not waiting any more (cancelled): nothing to record
        conn.execute(
            _INSERT_WAIT_STEP,
            {
                "execution_id": row["execution_id"],
                "key": row["step_key"],
                "seq": row["seq"],
                "kind": row["step_kind"],
                "output": output_json if error is None else None,
                "error": error.model_dump_json() if error is not None else None,
                "state": row["state"],
                "started_at": row["started_at"],
                "now": now,
            },
        )
        return Transition(row["execution_id"], QUEUED)

    def on_event(
        self, conn: Connection, project_id: str, event: Event, data_json: str | None, now: int
    ) -> list[Transition]:
        """End every wait for ``event``'s topic registered before it was published."""
        rows = conn.execute(self._by_topic, {"p": project_id, "t": event.topic}).mappings().all()
        transitions = []
        envelope: str | None = None
        for row in rows:
            if row["after_seq"] is not None and row["after_seq"] >= event.seq:
                continue
            envelope = envelope or event_envelope(event, data_json)
            ended = self.end(conn, row, now, output_json=envelope)
            if ended is not None:
                transitions.append(ended)
        return transitions

    def fire_due(self, conn: Connection, now: int, limit: int) -> list[Transition]:
        """Wake sleeps that are due and time out suspends / event waits that expired."""
        transitions = []
        for row in conn.execute(self._due, {"now": now, "n": limit}).mappings().all():
            if row["kind"] == WaitKind.SLEEP.value:
                ended = self.end(conn, row, now, output_json=dumps({"until": row["expires_at"]}))
            else:
                waited = max(0, row["expires_at"] - row["started_at"]) / 1000
                what = "resume" if row["kind"] == WaitKind.SUSPEND.value else "event"
                if row["topic"]:
                    what = f"event on {row['topic']!r}"
                error = ErrorInfo(
                    type="polos.WaitTimeoutError",
                    message=f"step {row['step_key']!r} timed out after {waited:g} s "
                    f"waiting for a {what}",
                )
                ended = self.end(conn, row, now, error=error)
            if ended is not None:
                transitions.append(ended)
        return transitions

    def children_finished(
        self, conn: Connection, parents: Sequence[tuple[str, str]], now: int
    ) -> list[Transition]:
        """Children of ``(parent id, parent step key)`` finished: end the parent's wait when
        none is left (the decrement locks the wait row, so concurrent finishes count right)."""
        transitions = []
        for (parent_id, key), n in sorted(Counter(parents).items()):
            row = (
                conn.execute(_CHILD_DONE, {"n": n, "eid": parent_id, "key": key}).mappings().first()
            )
            if row is None or row["pending"] > 0:
                continue
            ex = t.executions
            children = conn.execute(
                sa.select(
                    ex.c.id,
                    ex.c.workflow_id,
                    ex.c.status,
                    ex.c.result,
                    ex.c.error,
                    ex.c.parent_index,
                )
                .where(ex.c.parent_id == parent_id, ex.c.parent_step_key == key)
                .order_by(ex.c.parent_index)
            ).all()
            results = [
                {
                    "execution_id": c.id,
                    "workflow_id": c.workflow_id,
                    "index": c.parent_index or 0,
                    "status": c.status,
                    "result": loads(c.result),
                    "error": loads(c.error),
                }
                for c in children
            ]
            batch = bool((loads(row["data"]) or {}).get("batch"))
            output = results if batch else (results[0] if results else None)
            ended = self.end(conn, row, now, output_json=dumps(output))
            if ended is not None:
                transitions.append(ended)
        return transitions

    # ------------------------------------------------------------------ resume

    def resume(
        self,
        conn: Connection,
        execution: Mapping[Any, Any],
        step_key: str,
        data_json: str,
        now: int,
        *,
        by: str | None = None,
        comment: str | None = None,
        exact: bool = False,
    ) -> tuple[bool, str, Transition | None]:
        """Resume ``execution`` at its suspend step ``step_key`` (exact, or without suffix).

        The step's output records the decision: the data, when, and who said what
        (``resumed_by``, ``comment``): the audit trail of an approval. ``exact``: the
        key must match with its occurrence suffix (an approval link is for one occurrence).
        """
        rows = conn.execute(self._of_execution, {"eid": execution["id"]}).mappings().all()
        for row in rows:
            if row["kind"] == WaitKind.SUSPEND.value and (
                step_key == row["step_key"]
                or (not exact and step_key == base_key(row["step_key"]))  # approval links
            ):
                output = f'{{"data":{data_json},"resumed_at":{now}'
                if by is not None:
                    output += f',"resumed_by":{dumps(by)}'
                if comment is not None:
                    output += f',"comment":{dumps(comment)}'
                output += "}"
                return True, "", self.end(conn, row, now, output_json=output)
        return False, self._why_not(conn, execution, step_key, rows), None

    @staticmethod
    def _why_not(
        conn: Connection,
        execution: Mapping[Any, Any],
        step_key: str,
        waits: Sequence[Mapping[Any, Any]],
    ) -> str:
        eid = execution["id"]
        for row in waits:
            return (
                f"execution {eid} is not suspended at step {step_key!r}: it is waiting "
                f"at step {row['step_key']!r} for {row['kind']}"
            )
        st = t.steps
        recorded = conn.execute(
            sa.select(st.c.key, st.c.kind, st.c.error, st.c.completed_at)
            .where(
                st.c.execution_id == eid,
                sa.or_(st.c.key == step_key, st.c.key.startswith(f"{step_key}#", autoescape=True)),
            )
            .order_by(st.c.seq.desc())
            .limit(1)
        ).first()
        if recorded is not None and recorded.kind == StepKind.SUSPEND.value:
            if recorded.error is not None:
                return f"step {recorded.key!r} of execution {eid} already timed out"
            return f"step {recorded.key!r} of execution {eid} was already resumed"
        status = execution["status"]
        if status in TERMINAL:
            return f"execution {eid} is {status}; it is not waiting"
        return f"execution {eid} is {status} and not suspended at step {step_key!r}"

    @staticmethod
    def drop(conn: Connection, execution_ids: Sequence[str]) -> None:
        """Forget the waits of executions that were cancelled."""
        if execution_ids:
            conn.execute(t.waits.delete().where(t.waits.c.execution_id.in_(list(execution_ids))))
