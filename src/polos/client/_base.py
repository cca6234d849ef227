"""Building blocks of :class:`PolosClient`: JSON conversion, the sync portal, execution handles."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from polos.errors import SerializationError
from polos.protocol import Execution, ExecutionStatus

if TYPE_CHECKING:
    from ._client import PolosClient

T = TypeVar("T")


def _jsonable(value: Any) -> Any:
    import pydantic_core

    try:
        return pydantic_core.to_jsonable_python(value)
    except pydantic_core.PydanticSerializationError as exc:
        raise SerializationError(f"payload cannot be sent as JSON: {exc}") from exc


class _Portal:
    """A private event loop in a daemon thread, to run the async API from sync code."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                threading.Thread(
                    target=loop.run_forever, name="polos-client-sync", daemon=True
                ).start()
                self._loop = loop
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()


class ExecutionHandle:
    """A started execution: ask for its status, wait for its result, cancel it."""

    def __init__(self, client: PolosClient, execution_id: str, workflow_id: str) -> None:
        self.client = client
        """The client the handle's calls go through."""
        self.id = execution_id
        """The execution's id (pass it to ``PolosClient.get_execution``, ``cancel``...)."""
        self.workflow_id = workflow_id
        """The workflow the execution runs."""

    async def get(self) -> Execution:
        """The execution as the orchestrator sees it now."""
        return await self.client.get_execution(self.id)

    async def status(self) -> ExecutionStatus:
        """Its current status."""
        return (await self.get()).status

    async def result(self, timeout: float | timedelta | None = None) -> Any:
        """Wait for the execution to finish and return its result (JSON data).

        Raises:
            WorkflowFailedError: it failed (``error_type``/``error_message`` say why).
            WorkflowCancelledError: it was cancelled.
            WorkflowTimeoutError: it ran out of its run timeout.
            polos.TimeoutError: it did not finish within ``timeout`` seconds.
        """
        return await self.client.result(self.id, timeout=timeout)

    async def cancel(self, reason: str | None = None, *, by: str | None = None) -> Execution:
        """Cancel it and its children (no effect once finished); see ``PolosClient.cancel``."""
        return await self.client.cancel(self.id, reason=reason, by=by)

    def get_sync(self) -> Execution:
        """Blocking :meth:`get`."""
        execution: Execution = self.client._portal.run(
            self.client._in_portal(lambda c: c.get_execution(self.id))
        )
        return execution

    def status_sync(self) -> ExecutionStatus:
        """Blocking :meth:`status`."""
        return self.get_sync().status

    def result_sync(self, timeout: float | timedelta | None = None) -> Any:
        """Blocking :meth:`result`."""
        return self.client._portal.run(
            self.client._in_portal(lambda c: c.result(self.id, timeout=timeout))
        )

    def __repr__(self) -> str:
        return f"ExecutionHandle(id={self.id!r}, workflow_id={self.workflow_id!r})"
