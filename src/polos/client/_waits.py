"""Concurrent waits of one client share long polls.

A hundred ``handle.result()`` calls in flight would otherwise be a hundred long-poll
requests (and httpcore's pool cost grows with its size). Waits started in the same
event-loop tick are sent as one ``POST /executions/wait``; each caller still gets its
own result, error and timeout.
"""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import Awaitable, Callable

from polos.errors import ExecutionNotFoundError, TimeoutError
from polos.protocol import Execution

Poll = Callable[[list[str], float], Awaitable[list[Execution]]]

BATCH = 1000  # the API's limit of ids per wait request
SERVER_TIMEOUT = 30.0  # how long one shared long poll may stay open


class WaitCoalescer:
    """Shares long polls between the concurrent waits of one client (one event loop)."""

    def __init__(self, poll: Poll) -> None:
        self._poll = poll
        self._futures: dict[str, asyncio.Future[Execution]] = {}
        self._waiters: dict[str, int] = {}
        self._new: list[str] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def wait(self, execution_id: str, timeout: float | None) -> Execution:
        """Wait until ``execution_id`` finishes; ``timeout`` seconds at most (None: no limit)."""
        future = self._futures.get(execution_id)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self._futures[execution_id] = future
            if not self._new:
                asyncio.get_running_loop().call_soon(self._flush)
            self._new.append(execution_id)
        self._waiters[execution_id] = self._waiters.get(execution_id, 0) + 1
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except builtins.TimeoutError:
            raise TimeoutError(
                f"execution {execution_id} did not finish within {timeout:g} s"
            ) from None
        finally:
            left = self._waiters[execution_id] - 1
            if left:
                self._waiters[execution_id] = left
            else:
                del self._waiters[execution_id]

    def _flush(self) -> None:
        ids, self._new = self._new, []
        for start in range(0, len(ids), BATCH):
            self._spawn(ids[start : start + BATCH])

    def _spawn(self, ids: list[str]) -> None:
        task = asyncio.ensure_future(self._run(ids))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, ids: list[str]) -> None:
        pending = ids
        while True:
            # Stop polling for executions nobody waits for any more.
            for execution_id in pending:
                if execution_id not in self._waiters:
                    self._forget(execution_id)
            pending = [i for i in pending if i in self._futures]
            if not pending:
                return
            try:
                executions = await self._poll(pending, SERVER_TIMEOUT)
            except ExecutionNotFoundError as exc:
                if len(pending) == 1:
                    self._fail(pending, exc)
                else:  # find out which id is unknown: wait for each alone
                    for execution_id in pending:
                        self._spawn([execution_id])
                return
            except Exception as exc:
                self._fail(pending, exc)
                return
            for execution in executions:
                if execution.status.is_terminal:
                    future = self._futures.pop(execution.id, None)
                    if future is not None and not future.done():
                        future.set_result(execution)

    def _fail(self, ids: list[str], exc: Exception) -> None:
        for execution_id in ids:
            future = self._futures.pop(execution_id, None)
            if future is not None and not future.done():
                future.set_exception(exc)

    def _forget(self, execution_id: str) -> None:
        future = self._futures.pop(execution_id, None)
        if future is not None and not future.done():
            future.cancel()
