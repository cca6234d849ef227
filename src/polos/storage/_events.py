"""The event log: publishing, per-topic sequence numbers and event triggers.

Each topic has a row in ``topics`` whose ``last_seq`` is bumped by every
publish. That row is the topic's lock: publishes on one topic are serialised
(so ``seq`` has no gaps and commit order is ``seq`` order, which lets a reader
that saw ``seq`` N never miss an N-1 committed later), and a wait registered
on the topic reads ``last_seq`` under the same lock. A publish starts the
triggered workflows and ends the matching event waits in its own transaction:
one event, one triggered execution per workflow, even with several
orchestrators.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from polos.protocol import Event, WorkflowSpec

from . import _tables as t
from ._codec import dumps, event_from_row, loads, new_id
from ._ops import Created, CreateExecution, Published, PublishOp, Transition
from ._waits import WaitWrites, watermark

CreateMany = Callable[
    [Connection, list[tuple[int, CreateExecution]], int], dict[int, Created | str]
]

_BUMP = sa.text(
    "INSERT INTO topics (project_id, name, last_seq, created_at) VALUES (:p, :t, 1, :now) "
    "ON CONFLICT (project_id, name) DO UPDATE SET last_seq = topics.last_seq + 1 "
    "RETURNING last_seq"
)
_INSERT_EVENT = sa.text(
    "INSERT INTO events (project_id, topic, seq, id, data, idempotency_key, "
    "source_execution_id, created_at) VALUES (:p, :t, :seq, :id, :data, :key, :source, :now)"
)

_INSERT_TRIGGER = sa.text(
    "INSERT INTO triggers (project_id, topic, workflow_id, cursor, batch_size, "
    "batch_timeout_ms, batch_due_at, created_at) VALUES (:p, :t, :w, :cursor, :size, "
    ":timeout, NULL, :now) ON CONFLICT DO NOTHING"
)


def _meta(event: Event) -> dict[str, Any]:
    return {"id": event.id, "topic": event.topic, "seq": event.seq, "created_at": event.created_at}


class EventWrites:
    """Statements on ``topics``, ``events`` and ``triggers`` for one dialect."""

    def __init__(
        self, lock_rows: str, skip_locked: str, waits: WaitWrites, create: CreateMany
    ) -> None:
        self._waits = waits
        self._create = create
        self._triggers_of_topic = sa.text(
            "SELECT * FROM triggers WHERE project_id = :p AND topic = :t" + lock_rows
        )
        self._due_triggers = sa.text(
            "SELECT * FROM triggers WHERE batch_due_at IS NOT NULL AND batch_due_at <= :now "
            "ORDER BY batch_due_at LIMIT :n" + skip_locked
        )

    # ------------------------------------------------------------------ publish

    def publish(
        self, conn: Connection, op: PublishOp, now: int
    ) -> tuple[Published, list[Transition]]:
        """Append the event; start triggered executions; end waits for it."""
        ev = t.events
        if op.idempotency_key is not None:
            # Lock the topic first: a concurrent publish with the same key then sees ours.
            watermark(conn, op.project_id, op.topic, now)
            row = (
                conn.execute(
                    sa.select(ev).where(
                        ev.c.project_id == op.project_id, ev.c.idempotency_key == op.idempotency_key
                    )
                )
                .mappings()
                .first()
            )
            if row is not None:
                return Published(event_from_row(row), created=False, project_id=op.project_id), []
        seq = int(conn.execute(_BUMP, {"p": op.project_id, "t": op.topic, "now": now}).scalar_one())
        event = Event(
            id=new_id(),
            topic=op.topic,
            seq=seq,
            data=loads(op.data_json),
            created_at=now,
            idempotency_key=op.idempotency_key,
            source_execution_id=op.source_execution_id,
        )
        conn.execute(
            _INSERT_EVENT,
            {
                "p": op.project_id,
                "t": op.topic,
                "seq": seq,
                "id": event.id,
                "data": op.data_json,
                "key": op.idempotency_key,
                "source": op.source_execution_id,
                "now": now,
            },
        )
        triggered = self._trigger(conn, op.project_id, event, op.data_json, now)
        transitions = self._waits.on_event(conn, op.project_id, event, op.data_json, now)
        published = Published(event, True, triggered, op.project_id)
        return published, transitions

    # ------------------------------------------------------------------ triggers

    def _trigger(
        self, conn: Connection, project_id: str, event: Event, data_json: str, now: int
    ) -> list[str]:
        started: list[str] = []
        rows = conn.execute(self._triggers_of_topic, {"p": project_id, "t": event.topic})
        for trig in rows.mappings().all():
            if trig["cursor"] >= event.seq:
                continue
            if trig["batch_size"] == 1:
                started += self._start(conn, trig, [(event, data_json)], now)
                self._advance(conn, trig, event.seq, None)
                continue
            pending = event.seq - trig["cursor"]
            if pending >= trig["batch_size"]:
                started += self._flush(conn, trig, now)
            elif pending == 1 and trig["batch_timeout_ms"] is not None:
                self._advance(conn, trig, trig["cursor"], now + trig["batch_timeout_ms"])
        return started

    def _flush(self, conn: Connection, trig: Mapping[Any, Any], now: int) -> list[str]:
        """Start one execution with the trigger's next (up to batch_size) pending events."""
        ev = t.events
        rows = (
            conn.execute(
                sa.select(ev)
                .where(
                    ev.c.project_id == trig["project_id"],
                    ev.c.topic == trig["topic"],
                    ev.c.seq > trig["cursor"],
                )
                .order_by(ev.c.seq)
                .limit(trig["batch_size"])
            )
            .mappings()
            .all()
        )
        if not rows:
            self._advance(conn, trig, trig["cursor"], None)
            return []
        batch = [(event_from_row({**r, "data": None}), r["data"] or "null") for r in rows]
        started = self._start(conn, trig, batch, now)
        last = batch[-1][0].seq
        last_seq = conn.scalar(
            sa.select(t.topics.c.last_seq).where(
                t.topics.c.project_id == trig["project_id"], t.topics.c.name == trig["topic"]
            )
        )
        more = last_seq is not None and last_seq > last
        timeout = trig["batch_timeout_ms"]
        self._advance(conn, trig, last, now + timeout if more and timeout is not None else None)
        return started

    def _start(
        self,
        conn: Connection,
        trig: Mapping[Any, Any],
        batch: Sequence[tuple[Event, str]],
        now: int,
    ) -> list[str]:
        if trig["batch_size"] == 1:
            event, data_json = batch[0]
            payload, trigger_event = data_json, dumps(_meta(event))
        else:
            payload = "[" + ",".join(d for _, d in batch) + "]"
            trigger_event = dumps([_meta(e) for e, _ in batch])
        first = batch[0][0]
        op = CreateExecution(
            project_id=trig["project_id"],
            workflow_id=trig["workflow_id"],
            payload_json=payload,
            idempotency_key=f"trigger:{trig['workflow_id']}:{first.topic}:{first.seq}",
            trigger_event_json=trigger_event,
        )
        created = self._create(conn, [(0, op)], now).get(0)
        if isinstance(created, Created) and created.created:
            return [created.execution.id]
        return []

    @staticmethod
    def _advance(conn: Connection, trig: Mapping[Any, Any], cursor: int, due: int | None) -> None:
        tr = t.triggers
        conn.execute(
            tr.update()
            .where(
                tr.c.project_id == trig["project_id"],
                tr.c.topic == trig["topic"],
                tr.c.workflow_id == trig["workflow_id"],
            )
            .values(cursor=cursor, batch_due_at=due)
        )

    def flush_due(self, conn: Connection, now: int, limit: int) -> list[str]:
        """Start the batches whose ``batch_timeout`` ran out."""
        started: list[str] = []
        for trig in conn.execute(self._due_triggers, {"now": now, "n": limit}).mappings().all():
            started += self._flush(conn, trig, now)
        return started

    @staticmethod
    def sync_triggers(
        conn: Connection, project_id: str, specs: Sequence[WorkflowSpec], now: int
    ) -> None:
        """Make ``triggers`` match what the workers' workflows declare.

        A new trigger starts at the topic's current end: events published before the
        workflow was registered do not start it.
        """
        tr = t.triggers
        for spec in specs:
            topic = spec.options.get("trigger_on_event")
            existing = {
                r.topic
                for r in conn.execute(
                    sa.select(tr.c.topic).where(
                        tr.c.project_id == project_id, tr.c.workflow_id == spec.id
                    )
                ).all()
            }
            stale = existing - {topic}
            if stale:
                conn.execute(
                    tr.delete().where(
                        tr.c.project_id == project_id,
                        tr.c.workflow_id == spec.id,
                        tr.c.topic.in_(sorted(stale)),
                    )
                )
            if not topic:
                continue
            batch_size = int(spec.options.get("batch_size") or 1)
            timeout_s = spec.options.get("batch_timeout_seconds")
            timeout_ms = round(float(timeout_s) * 1000) if timeout_s is not None else None
            if topic in existing:
                conn.execute(
                    tr.update()
                    .where(
                        tr.c.project_id == project_id,
                        tr.c.workflow_id == spec.id,
                        tr.c.topic == topic,
                    )
                    .values(batch_size=batch_size, batch_timeout_ms=timeout_ms)
                )
                continue
            # Two workers registering the same workflow at once: the first insert wins.
            conn.execute(
                _INSERT_TRIGGER,
                {
                    "p": project_id,
                    "t": topic,
                    "w": spec.id,
                    "cursor": watermark(conn, project_id, topic, now),
                    "size": batch_size,
                    "timeout": timeout_ms,
                    "now": now,
                },
            )
