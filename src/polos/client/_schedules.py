"""``client.schedules``: cron schedules of workflows (one per workflow and key).

Each call has a blocking ``_sync`` twin. See ``docs/schedules.md`` for the cron,
time zone, catch-up and overlap rules.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from polos.protocol import (
    CatchupPolicy,
    OverlapPolicy,
    Schedule,
    ScheduleList,
    TriggerScheduleResponse,
)

from ._base import _jsonable

if TYPE_CHECKING:
    from ._client import PolosClient

_UNSET: Any = object()


def _workflow_id(workflow: Any) -> str:
    """A workflow id from an id or an object with ``.id`` (a ``@workflow``)."""
    if isinstance(workflow, str):
        return workflow
    return str(workflow.id)


class SchedulesClient:
    """Create, list, change, pause, resume, delete and trigger schedules (``client.schedules``).

    A schedule starts its workflow at every slot of a cron expression in a time zone;
    the run's payload is a :class:`~polos.SchedulePayload` carrying the slot time.
    Schedules are identified by ``(workflow, key)`` (e.g. one per user) and by an id.
    """

    def __init__(self, client: PolosClient) -> None:
        self.client = client

    async def create(
        self,
        workflow: Any,
        cron: str,
        timezone: str = "UTC",
        key: str = "global",
        payload: Any = None,
        *,
        catchup: CatchupPolicy | str = CatchupPolicy.ONCE,
        overlap: OverlapPolicy | str = OverlapPolicy.SKIP,
    ) -> Schedule:
        """Create the schedule of ``(workflow, key)``, or replace its settings if it exists.

        ``workflow`` is a workflow id or a ``@workflow`` object. ``payload`` reaches each
        run as ``SchedulePayload.data``.

        Raises:
            ApiError: 422 for an invalid cron or timezone (the message says which), 404
                for an unregistered workflow, 409 for a schedule declared in code.
        """
        body = {
            "workflow_id": _workflow_id(workflow),
            "cron": cron,
            "timezone": timezone,
            "key": key,
            "payload": _jsonable(payload),
            "catchup": str(catchup),
            "overlap": str(overlap),
        }
        return Schedule.model_validate(await self.client._request("POST", "/schedules", json=body))

    async def list(
        self, workflow: Any = None, *, limit: int = 1000, cursor: str | None = None
    ) -> ScheduleList:
        """A page of schedules (of one workflow, if given), ordered by workflow and key.

        Pass ``page.next_cursor`` as ``cursor`` for the next page.
        """
        params: dict[str, str | int] = {"limit": limit}
        if workflow is not None:
            params["workflow_id"] = _workflow_id(workflow)
        if cursor:
            params["cursor"] = cursor
        return ScheduleList.model_validate(
            await self.client._request("GET", "/schedules", params=params)
        )

    async def get(self, schedule_id: str) -> Schedule:
        """One schedule. Raises ``ApiError`` (404, ``schedule_not_found``) when unknown."""
        return Schedule.model_validate(
            await self.client._request("GET", f"/schedules/{schedule_id}")
        )

    async def update(
        self,
        schedule_id: str,
        *,
        cron: str | None = None,
        timezone: str | None = None,
        payload: Any = _UNSET,
        catchup: CatchupPolicy | str | None = None,
        overlap: OverlapPolicy | str | None = None,
    ) -> Schedule:
        """Change what is given (``payload=None`` clears the payload). A new cron or
        timezone moves the next run to the new expression's next slot."""
        body: dict[str, Any] = {}
        if cron is not None:
            body["cron"] = cron
        if timezone is not None:
            body["timezone"] = timezone
        if payload is not _UNSET:
            body["payload"] = _jsonable(payload)
        if catchup is not None:
            body["catchup"] = str(catchup)
        if overlap is not None:
            body["overlap"] = str(overlap)
        return Schedule.model_validate(
            await self.client._request("PATCH", f"/schedules/{schedule_id}", json=body)
        )

    async def pause(self, schedule_id: str) -> Schedule:
        """Stop firing until :meth:`resume`."""
        return Schedule.model_validate(
            await self.client._request("POST", f"/schedules/{schedule_id}/pause")
        )

    async def resume(self, schedule_id: str) -> Schedule:
        """Fire again from the next slot after now (slots passed while paused do not run)."""
        return Schedule.model_validate(
            await self.client._request("POST", f"/schedules/{schedule_id}/resume")
        )

    async def delete(self, schedule_id: str) -> Schedule:
        """Delete the schedule (its executions stay); returns it as it was."""
        return Schedule.model_validate(
            await self.client._request("DELETE", f"/schedules/{schedule_id}")
        )

    async def trigger(
        self, schedule_id: str, *, idempotency_key: str | None = None
    ) -> TriggerScheduleResponse:
        """Start one run now, with now as its slot time.

        Without ``idempotency_key`` a fresh one is made for this call, so that the
        client's own retries (a lost answer, a fail-over) never start two runs.
        """
        body = {"idempotency_key": idempotency_key or f"client-{uuid.uuid4()}"}
        return TriggerScheduleResponse.model_validate(
            await self.client._request("POST", f"/schedules/{schedule_id}/trigger", json=body)
        )

    # ------------------------------------------------------------------ sync twins

    def _run(self, call: Any) -> Any:
        return self.client._portal.run(self.client._in_portal(call))

    def create_sync(self, workflow: Any, cron: str, *args: Any, **kwargs: Any) -> Schedule:
        """Blocking :meth:`create`."""
        wid = _workflow_id(workflow)
        result: Schedule = self._run(lambda c: c.schedules.create(wid, cron, *args, **kwargs))
        return result

    def list_sync(self, workflow: Any = None, **kwargs: Any) -> ScheduleList:
        """Blocking :meth:`list`."""
        wid = None if workflow is None else _workflow_id(workflow)
        result: ScheduleList = self._run(lambda c: c.schedules.list(wid, **kwargs))
        return result

    def get_sync(self, schedule_id: str) -> Schedule:
        """Blocking :meth:`get`."""
        result: Schedule = self._run(lambda c: c.schedules.get(schedule_id))
        return result

    def update_sync(self, schedule_id: str, **changes: Any) -> Schedule:
        """Blocking :meth:`update`."""
        result: Schedule = self._run(lambda c: c.schedules.update(schedule_id, **changes))
        return result

    def pause_sync(self, schedule_id: str) -> Schedule:
        """Blocking :meth:`pause`."""
        result: Schedule = self._run(lambda c: c.schedules.pause(schedule_id))
        return result

    def resume_sync(self, schedule_id: str) -> Schedule:
        """Blocking :meth:`resume`."""
        result: Schedule = self._run(lambda c: c.schedules.resume(schedule_id))
        return result

    def delete_sync(self, schedule_id: str) -> Schedule:
        """Blocking :meth:`delete`."""
        result: Schedule = self._run(lambda c: c.schedules.delete(schedule_id))
        return result

    def trigger_sync(
        self, schedule_id: str, *, idempotency_key: str | None = None
    ) -> TriggerScheduleResponse:
        """Blocking :meth:`trigger`."""
        key = idempotency_key or f"client-{uuid.uuid4()}"
        result: TriggerScheduleResponse = self._run(
            lambda c: c.schedules.trigger(schedule_id, idempotency_key=key)
        )
        return result

    def __repr__(self) -> str:
        return f"SchedulesClient({self.client!r})"
