"""Cron schedules: create, change, pause, delete, trigger, and fire due slots.

Exactly one execution per slot, with any number of orchestrators: firing is one
transaction that locks the due schedule rows (PostgreSQL ``FOR UPDATE SKIP
LOCKED``; SQLite has one writer), creates the slots' executions and moves
``next_at`` past ``now``. A concurrent firer either skips the locked rows or, once
the first commits, no longer sees them as due. Each slot's execution also carries
the idempotency key ``schedule:<schedule id>:<slot ms>``, so that even a schedule
deleted and made again (its id is derived from project, workflow and key) cannot
run a slot twice.
"""

from __future__ import annotations

import base64
import binascii
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from polos.protocol import (
    TERMINAL_STATUSES,
    CreateScheduleRequest,
    Schedule,
    SchedulePayload,
    TriggerScheduleResponse,
    UpdateScheduleRequest,
    next_slot,
    now_ms,
    plan_slots,
    slot_datetime,
)

from . import _tables as t
from ._codec import dumps, loads, new_id
from ._creates import create_many
from ._ops import Created, CreateExecution
from ._writes import WORK_CHANNEL, notify

if TYPE_CHECKING:
    from ._store import Store

log = logging.getLogger("polos.storage")

_NAMESPACE = uuid.UUID("0b7d7c8e-2f0a-4c55-9a4e-5c1b0f3e8d21")
_DONE = tuple(s.value for s in TERMINAL_STATUSES)

INSERT_SCHEDULE = sa.text(
    "INSERT INTO schedules (project_id, id, workflow_id, key, cron, timezone, payload, status, "
    "catchup, overlap, source, next_at, created_at, updated_at) VALUES (:project_id, :id, "
    ":workflow_id, :key, :cron, :timezone, :payload, 'active', :catchup, :overlap, :source, "
    ":next_at, :now, :now) ON CONFLICT DO NOTHING"
)
# The schedule's own queue (overlap="queue"): one run at a time, in slot order.
_QUEUE = sa.text(
    "INSERT INTO queues (project_id, name, concurrency_limit, created_at, updated_at) "
    "VALUES (:p, :name, 1, :now, :now) ON CONFLICT (project_id, name) DO UPDATE SET "
    "concurrency_limit = 1, updated_at = :now "
    "WHERE queues.concurrency_limit IS NULL OR queues.concurrency_limit <> 1"
)


def schedule_id(project_id: str, workflow_id: str, key: str) -> str:
    """The id of the schedule of ``(workflow, key)`` in a project (the same every time)."""
    return str(uuid.uuid5(_NAMESPACE, f"{project_id}\n{workflow_id}\n{key}"))


def queue_name(schedule: str) -> str:
    """The queue that runs a schedule's executions one at a time (``overlap="queue"``)."""
    return f"schedule:{schedule}"


@dataclass(frozen=True, slots=True)
class ScheduleRefused:
    """A schedule request that cannot be done; ``code`` says why, ``message`` in words.

    Codes: ``schedule_not_found``, ``workflow_not_found``, ``declared_in_code``,
    ``event_triggered``.
    """

    code: str
    message: str


@dataclass(slots=True)
class FiredSlots:
    """What one firing pass did."""

    schedules: int = 0
    """Due schedules it handled (whether or not they started anything)."""
    started: list[str] = field(default_factory=list)
    """Executions it created."""
    skipped: int = 0
    """Slots not run (catch-up or overlap policy)."""


def schedule_from_row(row: Mapping[Any, Any]) -> Schedule:
    """Convert a ``schedules`` row to the API's :class:`Schedule`."""
    return Schedule(
        id=row["id"],
        workflow_id=row["workflow_id"],
        key=row["key"],
        cron=row["cron"],
        timezone=row["timezone"],
        payload=loads(row["payload"]),
        status=row["status"],
        catchup=row["catchup"],
        overlap=row["overlap"],
        source=row["source"],
        next_at=row["next_at"],
        last_slot_at=row["last_slot_at"],
        last_execution_id=row["last_execution_id"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _payload(row: Mapping[Any, Any], slot: int, last: int | None, manual: bool = False) -> str:
    tz = row["timezone"]
    upcoming = next_slot(row["cron"], tz, slot) if not manual else row["next_at"]
    return SchedulePayload(
        timestamp=slot_datetime(slot, tz),
        last_timestamp=slot_datetime(last, tz) if last is not None else None,
        timezone=tz,
        schedule_id=row["id"],
        key=row["key"],
        upcoming=slot_datetime(upcoming, tz) if upcoming is not None else None,
        data=loads(row["payload"]),
        manual=manual,
    ).model_dump_json()


def _not_found(schedule: str) -> ScheduleRefused:
    return ScheduleRefused("schedule_not_found", f"schedule {schedule!r} does not exist")


def _declared(row: Mapping[Any, Any]) -> ScheduleRefused:
    return ScheduleRefused(
        "declared_in_code",
        f"schedule {row['id']!r} of workflow {row['workflow_id']!r} (key {row['key']!r}) is "
        "declared with @workflow(schedule=...): change it in the code (pause, resume, trigger "
        "and delete work through the API)",
    )


def _check_workflow(conn: Connection, project_id: str, workflow_id: str) -> ScheduleRefused | None:
    """Whether ``workflow_id`` may be scheduled: registered, and not event-triggered."""
    w = t.workflows
    options = conn.scalar(
        sa.select(w.c.options).where(w.c.project_id == project_id, w.c.id == workflow_id)
    )
    if options is None:
        return ScheduleRefused(
            "workflow_not_found",
            f"workflow {workflow_id!r} is not registered in project {project_id!r}: "
            "start a worker that serves it first",
        )
    topic = (loads(options) or {}).get("trigger_on_event")
    if topic:
        return ScheduleRefused(
            "event_triggered",
            f"workflow {workflow_id!r} is started by events on {topic!r}: a workflow is "
            "either event-triggered or scheduled, not both",
        )
    return None


def encode_cursor(workflow_id: str, key: str) -> str:
    """An opaque list cursor."""
    return base64.urlsafe_b64encode(dumps([workflow_id, key]).encode()).decode().rstrip("=")


def decode_cursor(raw: str) -> tuple[str, str]:
    """The position a cursor made by :func:`encode_cursor` stands for.

    Raises:
        ValueError: not such a cursor.
    """
    try:
        workflow_id, key = loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
        return str(workflow_id), str(key)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError) as exc:
        raise ValueError("cursor is not one this API returned") from exc


class ScheduleStore:
    """The schedule queries of a :class:`~polos.storage.Store` (``store.schedules``)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        dialect = store.dialect
        self._due = sa.text(
            "SELECT * FROM schedules WHERE status = 'active' AND next_at <= :now "
            "ORDER BY next_at LIMIT :n" + dialect.skip_locked
        )
        self._read_one = sa.text("SELECT * FROM schedules WHERE project_id = :p AND id = :id")
        self._one = sa.text(
            "SELECT * FROM schedules WHERE project_id = :p AND id = :id" + dialect.lock_rows
        )
        self._by_key = sa.text(
            "SELECT * FROM schedules WHERE project_id = :p AND workflow_id = :w AND key = :k"
            + dialect.lock_rows
        )

    # ------------------------------------------------------------------ reads

    async def get(self, project_id: str, schedule: str) -> Schedule | None:
        """One schedule of a project, or None."""

        def go(conn: Connection) -> Schedule | None:
            row = conn.execute(self._read_one, {"p": project_id, "id": schedule}).mappings().first()
            return schedule_from_row(row) if row is not None else None

        return await self._store.read(go)

    async def list_schedules(
        self,
        project_id: str,
        *,
        workflow_id: str | None = None,
        limit: int = 100,
        cursor: tuple[str, str] | None = None,
    ) -> tuple[list[Schedule], tuple[str, str] | None]:
        """A page of schedules ordered by (workflow, key), and the next page's position."""
        s = t.schedules
        query = sa.select(s).where(s.c.project_id == project_id)
        if workflow_id is not None:
            query = query.where(s.c.workflow_id == workflow_id)
        if cursor is not None:
            query = query.where(sa.tuple_(s.c.workflow_id, s.c.key) > cursor)
        query = query.order_by(s.c.workflow_id, s.c.key).limit(limit + 1)

        def go(conn: Connection) -> tuple[list[Schedule], tuple[str, str] | None]:
            rows = conn.execute(query).mappings().all()
            items = [schedule_from_row(r) for r in rows[:limit]]
            more = len(rows) > limit
            return items, (items[-1].workflow_id, items[-1].key) if more else None

        return await self._store.read(go)

    async def next_due(self) -> int | None:
        """When the next active schedule falls due (epoch ms), if any."""
        s = t.schedules

        def go(conn: Connection) -> int | None:
            value = conn.scalar(sa.select(sa.func.min(s.c.next_at)).where(s.c.status == "active"))
            return int(value) if value is not None else None

        return await self._store.read(go)

    # ------------------------------------------------------------------ changes

    async def create(
        self, project_id: str, body: CreateScheduleRequest, *, now: int | None = None
    ) -> tuple[Schedule, bool] | ScheduleRefused:
        """Create the schedule of ``(workflow, key)``, or replace its cron, zone, payload and
        policies (``created`` False). A schedule declared in code is refused."""
        at = now if now is not None else now_ms()

        def go(conn: Connection) -> tuple[Schedule, bool] | ScheduleRefused:
            refused = _check_workflow(conn, project_id, body.workflow_id)
            if refused is not None:
                return refused
            values = {
                "cron": body.cron,
                "timezone": body.timezone,
                "payload": dumps(body.payload) if body.payload is not None else None,
                "catchup": body.catchup.value,
                "overlap": body.overlap.value,
            }
            sid = schedule_id(project_id, body.workflow_id, body.key)
            inserted = conn.execute(
                INSERT_SCHEDULE,
                {
                    "project_id": project_id,
                    "id": sid,
                    "workflow_id": body.workflow_id,
                    "key": body.key,
                    "source": "api",
                    "next_at": next_slot(body.cron, body.timezone, at),
                    "now": at,
                    **values,
                },
            )
            params = {"p": project_id, "w": body.workflow_id, "k": body.key}
            row = conn.execute(self._by_key, params).mappings().one()
            if inserted.rowcount == 1:
                return schedule_from_row(row), True
            if row["source"] == "decorator":
                return _declared(row)
            return self._change(conn, row, values, at), False

        return await self._store.write(go)

    async def update(
        self, project_id: str, schedule: str, body: UpdateScheduleRequest, *, now: int | None = None
    ) -> Schedule | ScheduleRefused:
        """Change what ``body`` gives. A new cron or zone moves ``next_at`` to its next slot."""
        at = now if now is not None else now_ms()
        values: dict[str, Any] = {}
        for name in ("cron", "timezone", "catchup", "overlap"):
            value = getattr(body, name)
            if value is not None:
                values[name] = value.value if hasattr(value, "value") else value
        if "payload" in body.model_fields_set:
            values["payload"] = dumps(body.payload) if body.payload is not None else None

        def go(conn: Connection) -> Schedule | ScheduleRefused:
            row = conn.execute(self._one, {"p": project_id, "id": schedule}).mappings().first()
            if row is None:
                return _not_found(schedule)
            if row["source"] == "decorator":
                return _declared(row)
            return self._change(conn, row, values, at)

        return await self._store.write(go)

    def _change(
        self, conn: Connection, row: Mapping[Any, Any], values: dict[str, Any], at: int
    ) -> Schedule:
        merged = {**row, **values, "updated_at": at}
        moved = merged["cron"] != row["cron"] or merged["timezone"] != row["timezone"]
        if moved and row["status"] == "active":
            merged["next_at"] = next_slot(merged["cron"], merged["timezone"], at)
        s = t.schedules
        conn.execute(
            s.update()
            .where(s.c.project_id == row["project_id"], s.c.id == row["id"])
            .values(**{k: merged[k] for k in (*values, "updated_at", "next_at")})
        )
        return schedule_from_row(merged)

    async def set_paused(
        self, project_id: str, schedule: str, paused: bool, *, now: int | None = None
    ) -> Schedule | ScheduleRefused:
        """Pause (no slot fires) or resume (from the next slot after now: slots that passed
        while paused do not run)."""
        at = now if now is not None else now_ms()

        def go(conn: Connection) -> Schedule | ScheduleRefused:
            row = conn.execute(self._one, {"p": project_id, "id": schedule}).mappings().first()
            if row is None:
                return _not_found(schedule)
            if (row["status"] == "paused") == paused:
                return schedule_from_row(row)
            values = {
                "status": "paused" if paused else "active",
                "next_at": None if paused else next_slot(row["cron"], row["timezone"], at),
                "updated_at": at,
            }
            s = t.schedules
            conn.execute(
                s.update().where(s.c.project_id == project_id, s.c.id == schedule).values(**values)
            )
            return schedule_from_row({**row, **values})

        return await self._store.write(go)

    async def delete(self, project_id: str, schedule: str) -> Schedule | ScheduleRefused:
        """Delete a schedule (its executions stay); returns it as it was."""

        def go(conn: Connection) -> Schedule | ScheduleRefused:
            row = conn.execute(self._one, {"p": project_id, "id": schedule}).mappings().first()
            if row is None:
                return _not_found(schedule)
            s = t.schedules
            conn.execute(s.delete().where(s.c.project_id == project_id, s.c.id == schedule))
            return schedule_from_row(row)

        return await self._store.write(go)

    async def trigger(
        self,
        project_id: str,
        schedule: str,
        idempotency_key: str | None = None,
        *,
        now: int | None = None,
    ) -> TriggerScheduleResponse | ScheduleRefused:
        """Start one run now (slot time = now), paused or not, whatever the overlap policy
        (``queue`` still runs it in the schedule's queue). One run per idempotency key."""
        at = now if now is not None else now_ms()
        key = idempotency_key or new_id()

        def go(conn: Connection) -> TriggerScheduleResponse | ScheduleRefused:
            row = conn.execute(self._one, {"p": project_id, "id": schedule}).mappings().first()
            if row is None:
                return _not_found(schedule)
            op = self._create_op(row, at, row["last_slot_at"], f"manual:{key}", manual=True)
            self._ensure_queues(conn, [row], at)
            created = create_many(conn, [(0, op)], at).get(0)
            if not isinstance(created, Created):
                return ScheduleRefused(
                    "workflow_not_found",
                    f"workflow {row['workflow_id']!r} is not registered in project "
                    f"{project_id!r}: start a worker that serves it first",
                )
            if created.created:
                self._ran(conn, row, at, created.execution.id, row["next_at"], at)
                notify(conn, self._store.dialect, WORK_CHANNEL)
            return TriggerScheduleResponse(
                execution_id=created.execution.id,
                schedule_id=schedule,
                slot_at=at if created.created else created.execution.created_at,
                created=created.created,
            )

        return await self._store.write(go)

    # ------------------------------------------------------------------ firing

    async def fire_due(self, *, now: int | None = None, limit: int = 100) -> FiredSlots:
        """Start the executions of every due slot (see the module docstring)."""
        at = now if now is not None else now_ms()
        return await self._store.write(lambda conn: self._fire(conn, at, limit))

    def _fire(self, conn: Connection, now: int, limit: int) -> FiredSlots:
        result = FiredSlots()
        rows = conn.execute(self._due, {"now": now, "n": limit}).mappings().all()
        if not rows:
            return result
        result.schedules = len(rows)
        last_ids = [r["last_execution_id"] for r in rows if r["last_execution_id"]]
        busy: set[str] = set()
        if last_ids:
            ex = t.executions
            busy = set(
                conn.scalars(
                    sa.select(ex.c.id).where(ex.c.id.in_(last_ids), ex.c.status.not_in(_DONE))
                ).all()
            )
        ops: list[tuple[int, CreateExecution]] = []
        runs: list[tuple[Mapping[Any, Any], int, list[int], int | None]] = []
        for row in rows:
            try:
                steps = plan_slots(
                    row["cron"], row["timezone"], row["next_at"], now, row["catchup"]
                )
                slots = steps.slots
                if row["overlap"] == "skip" and slots:
                    # Later slots of this pass would overlap the first one: skipped too.
                    keep = 0 if row["last_execution_id"] in busy else 1
                    result.skipped += len(slots) - keep
                    slots = slots[:keep]
                last, mine = row["last_slot_at"], []
                for slot in slots:
                    mine.append(self._create_op(row, slot, last, str(slot)))
                    last = slot
            except Exception as exc:  # a row no release of Polos wrote: stop it, not the loop
                log.error("schedule %s cannot be evaluated, stopped: %s", row["id"], exc)
                runs.append((row, len(ops), [], None))
                continue
            result.skipped += steps.missed
            runs.append((row, len(ops), slots, steps.next_at))
            ops += [(len(ops) + i, op) for i, op in enumerate(mine)]
        self._ensure_queues(conn, [r for r, _, slots, _ in runs if slots], now)
        created = create_many(conn, ops, now) if ops else {}
        for run, first, slots, next_at in runs:
            ran: tuple[int | None, str | None] = (None, None)
            for offset, slot in enumerate(slots):
                done = created.get(first + offset)
                if not isinstance(done, Created):
                    log.warning(
                        "schedule %s: workflow %r is not registered; slot skipped",
                        run["id"],
                        run["workflow_id"],
                    )
                    continue
                if done.created:
                    result.started.append(done.execution.id)
                ran = (slot, done.execution.id)
            self._ran(conn, run, ran[0], ran[1], next_at, now)
        if result.started:
            notify(conn, self._store.dialect, WORK_CHANNEL)
        return result

    @staticmethod
    def _ensure_queues(conn: Connection, rows: Sequence[Mapping[Any, Any]], now: int) -> None:
        """Give ``overlap="queue"`` schedules their one-at-a-time queue (limit 1)."""
        names = sorted(
            {(r["project_id"], queue_name(r["id"])) for r in rows if r["overlap"] == "queue"}
        )
        for project_id, name in names:
            conn.execute(_QUEUE, {"p": project_id, "name": name, "now": now})

    def _create_op(
        self,
        row: Mapping[Any, Any],
        slot: int,
        last: int | None,
        suffix: str,
        *,
        manual: bool = False,
    ) -> CreateExecution:
        return CreateExecution(
            project_id=row["project_id"],
            workflow_id=row["workflow_id"],
            payload_json=_payload(row, slot, last, manual),
            idempotency_key=f"schedule:{row['id']}:{suffix}",
            queue=self._queue(row),
            schedule_id=row["id"],
        )

    def _queue(self, row: Mapping[Any, Any]) -> str | None:
        return queue_name(row["id"]) if row["overlap"] == "queue" else None

    @staticmethod
    def _ran(
        conn: Connection,
        row: Mapping[Any, Any],
        slot: int | None,
        execution_id: str | None,
        next_at: int | None,
        now: int,
    ) -> None:
        values: dict[str, Any] = {"next_at": next_at, "updated_at": now}
        if slot is not None:
            values.update(last_slot_at=slot, last_execution_id=execution_id)
        s = t.schedules
        conn.execute(
            s.update()
            .where(s.c.project_id == row["project_id"], s.c.id == row["id"])
            .values(**values)
        )
