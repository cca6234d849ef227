"""Schedules declared in code (``@workflow(schedule=...)``), synced when a worker registers."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from polos.protocol import ScheduleSpec, WorkflowSpec, next_slot

from . import _tables as t
from ._schedules import INSERT_SCHEDULE, schedule_id

log = logging.getLogger("polos.storage")


def declared_schedule(workflow_id: str, option: Any) -> ScheduleSpec | None:
    """The schedule ``@workflow(schedule=...)`` declared (None: none, or only ``True``)."""
    if option is None or isinstance(option, bool):
        return None
    try:
        if isinstance(option, str):
            return ScheduleSpec(cron=option)
        return ScheduleSpec.model_validate(option)
    except ValueError as exc:  # another SDK version may send what this one refuses
        log.warning("workflow %r declares an invalid schedule, ignored: %s", workflow_id, exc)
        return None


def sync_schedules(
    conn: Connection, project_id: str, specs: Sequence[WorkflowSpec], now: int
) -> None:
    """Make the decorator schedules of ``specs`` match what the workflows declare.

    A new declaration starts at its next slot; an unchanged one keeps its ``next_at``
    (re-registering never re-runs or skips a slot) and its status (a schedule paused
    through the API stays paused). Decorator schedules a workflow no longer declares
    are deleted. Schedules made through the API are never touched: one with the
    declared key wins over the declaration.
    """
    if not specs:
        return
    s = t.schedules
    rows = (
        conn.execute(
            sa.select(s).where(
                s.c.project_id == project_id, s.c.workflow_id.in_(sorted({w.id for w in specs}))
            )
        )
        .mappings()
        .all()
    )
    by_workflow: dict[str, list[Mapping[Any, Any]]] = {}
    for row in rows:
        by_workflow.setdefault(row["workflow_id"], []).append(row)
    for spec in specs:
        declared = declared_schedule(spec.id, spec.options.get("schedule"))
        existing = by_workflow.get(spec.id, [])
        for old in existing:
            if old["source"] == "decorator" and (declared is None or old["key"] != declared.key):
                conn.execute(s.delete().where(s.c.project_id == project_id, s.c.id == old["id"]))
        if declared is None:
            continue
        same = next((r for r in existing if r["key"] == declared.key), None)
        if same is None:
            conn.execute(
                INSERT_SCHEDULE,
                {
                    "project_id": project_id,
                    "id": schedule_id(project_id, spec.id, declared.key),
                    "workflow_id": spec.id,
                    "key": declared.key,
                    "cron": declared.cron,
                    "timezone": declared.timezone,
                    "payload": None,
                    "catchup": declared.catchup.value,
                    "overlap": declared.overlap.value,
                    "source": "decorator",
                    "next_at": next_slot(declared.cron, declared.timezone, now),
                    "now": now,
                },
            )
            continue
        if same["source"] != "decorator":
            continue
        values: dict[str, Any] = {
            "cron": declared.cron,
            "timezone": declared.timezone,
            "catchup": declared.catchup.value,
            "overlap": declared.overlap.value,
        }
        if all(same[k] == v for k, v in values.items()):
            continue
        if (same["cron"], same["timezone"]) != (declared.cron, declared.timezone) and same[
            "status"
        ] == "active":
            values["next_at"] = next_slot(declared.cron, declared.timezone, now)
        conn.execute(
            s.update()
            .where(s.c.project_id == project_id, s.c.id == same["id"])
            .values(updated_at=now, **values)
        )
