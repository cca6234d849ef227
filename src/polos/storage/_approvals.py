"""Reads behind signed approval links: is an execution suspended at a step, and how.

Creating a link checks the execution is waiting at the suspend step (and records the
step's exact key, occurrence suffix included, in the link); the link's page reads the
suspend data it shows from the same wait row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from polos.protocol import Execution, WaitInfo, WaitKind

from . import _tables as t
from ._codec import execution_from_row, wait_from_row
from ._waits import WaitWrites, base_key

if TYPE_CHECKING:
    from ._store import Store

_WAITS_OF = sa.text("SELECT * FROM waits WHERE execution_id = :eid")


@dataclass(frozen=True, slots=True)
class SuspendLookup:
    """Where an execution stands with respect to a suspend step.

    Attributes:
        execution: the execution (None: no such execution in that project).
        wait: its suspend wait at the step (None: not suspended there).
        message: when ``wait`` is None, why (the same words as a refused resume).
    """

    execution: Execution | None
    wait: WaitInfo | None
    message: str = ""


async def find_suspend(
    store: Store, project_id: str, execution_id: str, step_key: str, *, exact: bool = False
) -> SuspendLookup:
    """The suspend wait of ``execution_id`` at ``step_key``.

    ``step_key`` matches the wait's key, or (unless ``exact``) its key without the
    occurrence suffix (``approval`` finds ``approval#2``), as a resume does.
    """

    def go(conn: Connection) -> SuspendLookup:
        ex = t.executions
        row = (
            conn.execute(
                sa.select(ex).where(ex.c.id == execution_id, ex.c.project_id == project_id)
            )
            .mappings()
            .first()
        )
        if row is None:
            return SuspendLookup(None, None, "not found")
        waits = conn.execute(_WAITS_OF, {"eid": execution_id}).mappings().all()
        for wait in waits:
            key = wait["step_key"]
            if wait["kind"] == WaitKind.SUSPEND.value and (
                step_key == key or (not exact and step_key == base_key(key))
            ):
                return SuspendLookup(execution_from_row(row), wait_from_row(wait))
        # _why_not only reads: it explains a refused resume in the resume's own words.
        why = WaitWrites._why_not(conn, row, step_key, waits)
        return SuspendLookup(execution_from_row(row), None, why)

    return await store.read(go)
