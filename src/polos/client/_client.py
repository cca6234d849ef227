"""``PolosClient``: the Python API of the orchestrator, over httpx."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

import pydantic

from polos.errors import (
    ConfigurationError,
    TimeoutError,
    WorkflowCancelledError,
    WorkflowFailedError,
    WorkflowTimeoutError,
)
from polos.protocol import (
    ApprovalLink,  # approval links
    BatchInvokeItem,
    BatchInvokeRequest,
    BatchInvokeResponse,
    Execution,
    ExecutionList,
    ExecutionPage,
    ExecutionStatus,
    Health,
    InvokeRequest,
    InvokeResponse,
    StepList,
    StepRecord,
    WaitKind,
    WaitPage,
    WorkerInfo,
    WorkerList,
    WorkflowInfo,
    WorkflowList,
    describe_problems,
    run_timeout_ms,
)

from ._base import ExecutionHandle, _jsonable, _Portal
from ._events import EventsClient
from ._queues import QueuesClient
from ._schedules import SchedulesClient
from ._sessions import SessionsClient
from ._transport import Transport
from ._waits import WaitCoalescer


def _seconds(value: float | timedelta | None) -> float | None:
    if value is None:
        return None
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def _epoch_ms(value: datetime | int | None) -> int | None:
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)  # a naive datetime is local time, as in Python
    return value


def _timeout_seconds(value: float | timedelta | None) -> float | None:
    ms = run_timeout_ms(value)
    return ms / 1000 if ms is not None else None


@contextlib.contextmanager
def _checked(what: str) -> Iterator[None]:
    """Turn a request model's validation error into a ConfigurationError naming the fields."""
    try:
        yield
    except pydantic.ValidationError as exc:
        raise ConfigurationError(f"invalid {what}: {describe_problems(exc.errors())}") from None


class PolosClient(Transport):
    """Talks to an orchestrator.

    Args:
        api_url: the orchestrator's URL (``POLOS_API_URL``, default ``http://127.0.0.1:8080``).
            Several orchestrators (replicas on one PostgreSQL) may be given as a list or a
            comma-separated string: when one cannot be reached, the client moves to the next.
        api_key: API key sent as a bearer token (``POLOS_API_KEY``).
        project_id: project to work in (``POLOS_PROJECT_ID``; the default project when unset).
        timeout: per-request timeout in seconds.
        retry_for: how long to keep retrying when the orchestrator cannot be reached.
    """

    def __init__(
        self,
        api_url: str | Sequence[str] | None = None,
        api_key: str | None = None,
        project_id: str | None = None,
        *,
        timeout: float = 30.0,
        retry_for: float = 30.0,
    ) -> None:
        super().__init__(api_url, api_key, project_id, timeout=timeout, retry_for=retry_for)
        self._portal = _Portal()
        self._portal_client: PolosClient | None = None
        self._coalescer: WaitCoalescer | None = None
        self._coalescer_loop: asyncio.AbstractEventLoop | None = None
        self._events: EventsClient | None = None
        self.schedules = SchedulesClient(self)
        """Cron schedules: create, list, update, pause, resume, delete, trigger."""
        self._queues: QueuesClient | None = None
        self._sessions: SessionsClient | None = None

    # ------------------------------------------------------------------ plumbing

    async def _in_portal(self, call: Any) -> Any:
        # Sync twins run on the portal's loop with a client of their own.
        if self._portal_client is None:
            self._portal_client = PolosClient(
                self.api_urls,
                self.api_key,
                self.project_id,
                timeout=self.timeout,
                retry_for=self.retry_for,
            )
        result: Awaitable[Any] = call(self._portal_client)
        return await result

    # ------------------------------------------------------------------ executions

    async def invoke(
        self,
        workflow_id: str,
        payload: Any = None,
        *,
        idempotency_key: str | None = None,
        queue: str | None = None,
        concurrency_key: str | None = None,
        priority: int = 0,
        initial_state: Any = None,
        run_timeout: float | timedelta | None = None,
        timeout_counts_waits: bool | None = None,
    ) -> ExecutionHandle:
        """Start an execution of ``workflow_id`` with ``payload`` (JSON data or a pydantic model).

        With ``idempotency_key``, calling again with the same key returns the
        first execution instead of starting another. ``run_timeout`` (seconds or a
        timedelta) overrides the workflow's run timeout for this execution;
        ``timeout_counts_waits`` overrides whether time parked at waits counts
        against it (see docs/timeouts-and-cancellation.md).

        Raises:
            WorkflowNotFoundError: no worker ever registered ``workflow_id``.
            ConfigurationError: ``run_timeout`` is not a positive duration.
        """
        with _checked(f"invoke of {workflow_id!r}"):
            body = InvokeRequest(
                payload=_jsonable(payload),
                idempotency_key=idempotency_key,
                queue=queue,
                concurrency_key=concurrency_key,
                priority=priority,
                initial_state=_jsonable(initial_state),
                run_timeout_seconds=_timeout_seconds(run_timeout),
                timeout_counts_waits=timeout_counts_waits,
            )
        data = await self._request(
            "POST",
            f"/workflows/{workflow_id}/executions",
            json=body.model_dump(mode="json", exclude_none=True),
        )
        execution = InvokeResponse.model_validate(data)
        return ExecutionHandle(self, execution.id, execution.workflow_id)

    async def invoke_many(
        self,
        workflow_id: str,
        payloads: Iterable[Any],
        *,
        idempotency_keys: Sequence[str | None] | None = None,
        queue: str | None = None,
        concurrency_key: str | None = None,
        priority: int = 0,
        run_timeout: float | timedelta | None = None,
        timeout_counts_waits: bool | None = None,
    ) -> list[ExecutionHandle]:
        """Start one execution of ``workflow_id`` per payload, with few requests.

        Executions are created 1,000 per request (each request in one
        transaction). ``idempotency_keys``, when given, pairs one key (or
        ``None``) with each payload. ``run_timeout`` and ``timeout_counts_waits``
        apply to each execution (see :meth:`invoke`).

        Raises:
            WorkflowNotFoundError: no worker ever registered ``workflow_id``.
            ConfigurationError: ``run_timeout`` is not a positive duration.
        """
        run_timeout_seconds = _timeout_seconds(run_timeout)
        items = [_jsonable(p) for p in payloads]
        keys = list(idempotency_keys) if idempotency_keys is not None else [None] * len(items)
        if len(keys) != len(items):
            raise ConfigurationError("idempotency_keys must have one entry per payload")
        handles: list[ExecutionHandle] = []
        for start in range(0, len(items), 1000):
            with _checked(f"invoke_many of {workflow_id!r}"):
                body = BatchInvokeRequest(
                    items=[
                        BatchInvokeItem(
                            workflow_id=workflow_id,
                            payload=payload,
                            idempotency_key=key,
                            queue=queue,
                            concurrency_key=concurrency_key,
                            priority=priority,
                            run_timeout_seconds=run_timeout_seconds,
                            timeout_counts_waits=timeout_counts_waits,
                        )
                        for payload, key in zip(
                            items[start : start + 1000], keys[start : start + 1000], strict=True
                        )
                    ]
                )
            data = await self._request(
                "POST", "/executions/batch", json=body.model_dump(mode="json", exclude_none=True)
            )
            handles += [
                ExecutionHandle(self, e.id, e.workflow_id)
                for e in BatchInvokeResponse.model_validate(data).items
            ]
        return handles

    async def wait_many(
        self, execution_ids: Iterable[str], timeout: float | timedelta | None = None
    ) -> list[Execution]:
        """Wait until every execution has finished; returns them in the order given.

        Raises:
            polos.TimeoutError: some did not finish within ``timeout``.
        """
        ids = list(execution_ids)
        limit = _seconds(timeout)
        deadline = None if limit is None else time.monotonic() + limit
        done: dict[str, Execution] = {}
        while len(done) < len(set(ids)):
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise TimeoutError(
                    f"{len(set(ids)) - len(done)} of {len(set(ids))} executions did not finish "
                    f"within {limit:g} s"
                )
            poll = 30.0 if remaining is None else min(30.0, max(0.0, remaining))
            pending = [i for i in dict.fromkeys(ids) if i not in done][:1000]
            data = await self._request(
                "POST",
                "/executions/wait",
                json={"ids": pending, "timeout": round(poll, 3)},
                timeout=poll + self.timeout,
                retry_for=remaining if remaining is not None else 3600.0,
                long_poll=True,
            )
            for execution in ExecutionList.model_validate(data).items:
                if execution.status.is_terminal:
                    done[execution.id] = execution
        return [done[i] for i in ids]

    def handle(self, execution_id: str, workflow_id: str = "") -> ExecutionHandle:
        """A handle on an existing execution."""
        return ExecutionHandle(self, execution_id, workflow_id)

    async def get_execution(self, execution_id: str) -> Execution:
        """One execution.

        Raises:
            ExecutionNotFoundError: no such execution in this project.
        """
        return Execution.model_validate(await self._request("GET", f"/executions/{execution_id}"))

    async def list_executions(
        self,
        *,
        status: ExecutionStatus | str | Iterable[ExecutionStatus | str] | None = None,
        workflow_id: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
        created_after: datetime | int | None = None,
        created_before: datetime | int | None = None,
        id_prefix: str | None = None,
        parent_id: str | None = None,
        root_id: str | None = None,
        top_level: bool = False,
    ) -> ExecutionPage:
        """A page of executions, newest first (pass ``page.next_cursor`` as ``cursor`` for more).

        Filters: ``created_after`` (inclusive) / ``created_before`` (exclusive) as datetimes
        or epoch ms, ``id_prefix`` (an id or its start), ``parent_id`` (children of one
        execution), ``root_id`` (a whole tree), ``top_level`` (no parent).
        """
        statuses = [status] if isinstance(status, str) else list(status or [])
        params: list[tuple[str, str | int]] = [("limit", limit)]
        params += [("status", str(s)) for s in statuses]
        optional: dict[str, str | int | None] = {
            "workflow_id": workflow_id,
            "cursor": cursor,
            "created_after": _epoch_ms(created_after),
            "created_before": _epoch_ms(created_before),
            "q": id_prefix,
            "parent_id": parent_id,
            "root_id": root_id,
            "top_level": "true" if top_level else None,
        }
        params += [(name, value) for name, value in optional.items() if value is not None]
        return ExecutionPage.model_validate(
            await self._request("GET", "/executions", params=params)
        )

    async def list_steps(self, execution_id: str) -> list[StepRecord]:
        """An execution's step log."""
        data = await self._request("GET", f"/executions/{execution_id}/steps")
        return StepList.model_validate(data).items

    async def cancel(
        self, execution_id: str, reason: str | None = None, *, by: str | None = None
    ) -> Execution:
        """Cancel an execution that has not finished (a finished one is returned unchanged).

        Its unfinished children (and their children) are cancelled with it and its
        waits are dropped; a running one is stopped on its worker at once (its
        coroutine gets :class:`~polos.ExecutionCancelled`). ``by`` (who, default
        ``api``) and ``reason`` are recorded in ``cancelled_by``; ``completed_at``
        says when.

        Raises:
            ExecutionNotFoundError: no such execution in this project.
        """
        body = {k: v for k, v in (("reason", reason), ("by", by)) if v}
        return Execution.model_validate(
            await self._request("POST", f"/executions/{execution_id}/cancel", json=body or None)
        )

    async def wait(self, execution_id: str, timeout: float | timedelta | None = None) -> Execution:
        """Wait until the execution finishes and return it (any final status).

        Rides out orchestrator restarts: connection errors are retried until ``timeout``.

        Raises:
            polos.TimeoutError: it did not finish in time.
        """
        loop = asyncio.get_running_loop()
        if self._coalescer is None or self._coalescer_loop is not loop:
            self._coalescer = WaitCoalescer(self._wait_batch)
            self._coalescer_loop = loop
        return await self._coalescer.wait(execution_id, _seconds(timeout))

    async def _wait_batch(self, ids: list[str], server_timeout: float) -> list[Execution]:
        """One shared long poll (see ``_waits``); rides out orchestrator restarts."""
        data = await self._request(
            "POST",
            "/executions/wait",
            json={"ids": ids, "timeout": server_timeout},
            timeout=server_timeout + self.timeout,
            retry_for=3600.0,
            long_poll=True,
        )
        return ExecutionList.model_validate(data).items

    async def result(self, execution_id: str, timeout: float | timedelta | None = None) -> Any:
        """Wait for the execution and return its result (JSON data), or raise why it has none."""
        execution = await self.wait(execution_id, timeout)
        return self.result_of(execution)

    @staticmethod
    def result_of(execution: Execution) -> Any:
        """The result of a finished execution, or the exception describing its failure."""
        if execution.status == ExecutionStatus.COMPLETED:
            return execution.result
        error = execution.error
        cls: type[WorkflowFailedError] = WorkflowFailedError
        if execution.status == ExecutionStatus.CANCELLED:
            cls = WorkflowCancelledError
        elif error is not None and error.type == "polos.WorkflowTimeoutError":
            cls = WorkflowTimeoutError
        raise cls(
            execution.id,
            error.type if error else execution.status.value,
            error.message if error else "",
            error.traceback if error else None,
        )

    # ------------------------------------------------------------------ waits, resumes, events

    async def resume(
        self,
        execution_id: str,
        step_key: str,
        data: Any = None,
        *,
        by: str | None = None,
        comment: str | None = None,
    ) -> Execution:
        """Resume an execution suspended at ``step_key``; ``data`` reaches the workflow.

        ``data`` (JSON data or a pydantic model) is what ``suspend()`` returns as the
        decision's data. ``step_key`` is the suspend step's key (``approval``;
        ``approval#2`` names its second occurrence). ``by`` and ``comment`` are recorded
        with the step (the approval's audit trail) and returned to the workflow too.

        Raises:
            ExecutionNotFoundError: no such execution in this project.
            NotWaitingError: it is not suspended at ``step_key`` (already resumed, timed
                out, never suspended there, or finished); the message says which.
        """
        body = {"step_key": step_key, "data": _jsonable(data)}
        if by is not None:
            body["by"] = by
        if comment is not None:
            body["comment"] = comment
        return Execution.model_validate(
            await self._request("POST", f"/executions/{execution_id}/resume", json=body)
        )

    async def retry(self, execution_id: str, *, by: str | None = None) -> Execution:
        """Run a failed or cancelled top-level execution again, from where it stopped.

        Completed steps are not run again; the step that failed the run runs again, with
        a fresh retry budget. Returns the execution, queued.

        Raises:
            ExecutionNotFoundError: no such execution in this project.
            NotRetryableError: it is not failed or cancelled, or it is a child execution.
        """
        body = {"by": by} if by is not None else None
        return Execution.model_validate(
            await self._request("POST", f"/executions/{execution_id}/retry", json=body)
        )

    async def approval_link(  # approval links
        self,
        execution_id: str,
        step_key: str,
        *,
        approver: str,
        expires_in: float | timedelta | None = None,
    ) -> ApprovalLink:
        """A signed URL that lets ``approver`` approve or reject the suspend step once.

        Send ``link.url`` to the approver (e-mail, chat): the page it opens shows the
        suspend data and its form; the decision resumes the execution, recorded as made
        by ``link:<approver>``. The link expires after ``expires_in`` (seconds or a
        timedelta; default 24 hours, at most 30 days) and works once. Anyone holding it
        can decide: it is a credential.

        Raises:
            ExecutionNotFoundError: no such execution in this project.
            NotWaitingError: it is not suspended at ``step_key``.
        """
        body: dict[str, Any] = {"step_key": step_key, "approver": approver}
        seconds = _seconds(expires_in)
        if seconds is not None:
            body["expires_in_seconds"] = max(1, round(seconds))
        return ApprovalLink.model_validate(
            await self._request("POST", f"/executions/{execution_id}/approval-links", json=body)
        )

    async def list_waits(
        self,
        kind: WaitKind | str | None = None,
        *,
        workflow_id: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> WaitPage:
        """A page of executions parked at a wait step, oldest wait first.

        ``kind`` keeps one kind of wait (``suspend``, ``event``, ``sleep``, ``child``);
        pass ``page.next_cursor`` as ``cursor`` for the next page.
        """
        params: list[tuple[str, str | int]] = [("limit", limit)]
        if kind:
            params.append(("kind", str(kind)))
        if workflow_id:
            params.append(("workflow_id", workflow_id))
        if cursor:
            params.append(("cursor", cursor))
        return WaitPage.model_validate(await self._request("GET", "/waits", params=params))

    @property
    def queues(self) -> QueuesClient:
        """Queue state and rate limits (one :class:`QueuesClient` per client)."""
        if self._queues is None:
            self._queues = QueuesClient(self)
        return self._queues

    @property
    def sessions(self) -> SessionsClient:
        """Agent session memory: load, save (versioned), list, delete (one per client)."""
        if self._sessions is None:
            self._sessions = SessionsClient(self)
        return self._sessions

    @property
    def events(self) -> EventsClient:
        """Publish, read and stream events (one :class:`EventsClient` per client)."""
        if self._events is None:
            self._events = EventsClient(self)
        return self._events

    # ------------------------------------------------------------------ registry and health

    async def list_workflows(self) -> list[WorkflowInfo]:
        """Workflows registered by workers of this project."""
        return WorkflowList.model_validate(await self._request("GET", "/workflows")).items

    async def list_workers(self) -> list[WorkerInfo]:
        """Workers of this project."""
        return WorkerList.model_validate(await self._request("GET", "/workers")).items

    async def health(self) -> Health:
        """The orchestrator's health answer."""
        response = await self._client().get(self.api_url + "/health")
        if response.status_code >= 400:
            raise self._error(response)
        return Health.model_validate(response.json())

    # ------------------------------------------------------------------ sync twins

    def invoke_sync(self, workflow_id: str, payload: Any = None, **options: Any) -> ExecutionHandle:
        """Blocking :meth:`invoke`."""
        handle: ExecutionHandle = self._portal.run(
            self._in_portal(lambda c: c.invoke(workflow_id, payload, **options))
        )
        return ExecutionHandle(self, handle.id, handle.workflow_id)

    def get_execution_sync(self, execution_id: str) -> Execution:
        """Blocking :meth:`get_execution`."""
        return self._portal.run(self._in_portal(lambda c: c.get_execution(execution_id)))  # type: ignore[no-any-return]

    def list_executions_sync(self, **filters: Any) -> ExecutionPage:
        """Blocking :meth:`list_executions`."""
        return self._portal.run(self._in_portal(lambda c: c.list_executions(**filters)))  # type: ignore[no-any-return]

    def cancel_sync(
        self, execution_id: str, reason: str | None = None, *, by: str | None = None
    ) -> Execution:
        """Blocking :meth:`cancel`."""
        return self._portal.run(self._in_portal(lambda c: c.cancel(execution_id, reason, by=by)))  # type: ignore[no-any-return]

    def result_sync(self, execution_id: str, timeout: float | timedelta | None = None) -> Any:
        """Blocking :meth:`result`."""
        return self._portal.run(self._in_portal(lambda c: c.result(execution_id, timeout)))

    def resume_sync(
        self, execution_id: str, step_key: str, data: Any = None, **options: Any
    ) -> Execution:
        """Blocking :meth:`resume`."""
        return self._portal.run(  # type: ignore[no-any-return]
            self._in_portal(lambda c: c.resume(execution_id, step_key, data, **options))
        )

    def retry_sync(self, execution_id: str, *, by: str | None = None) -> Execution:
        """Blocking :meth:`retry`."""
        return self._portal.run(self._in_portal(lambda c: c.retry(execution_id, by=by)))  # type: ignore[no-any-return]

    def approval_link_sync(  # approval links
        self, execution_id: str, step_key: str, **options: Any
    ) -> ApprovalLink:
        """Blocking :meth:`approval_link`."""
        return self._portal.run(  # type: ignore[no-any-return]
            self._in_portal(lambda c: c.approval_link(execution_id, step_key, **options))
        )

    def list_waits_sync(self, kind: WaitKind | str | None = None, **filters: Any) -> WaitPage:
        """Blocking :meth:`list_waits`."""
        return self._portal.run(self._in_portal(lambda c: c.list_waits(kind, **filters)))  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        return f"PolosClient(api_url={self.api_url!r}, project_id={self.project_id!r})"
