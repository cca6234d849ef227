"""``ctx.step``: durable steps and the replay engine.

Every side effect of a workflow goes through a step. A step's result is made
durable (recorded by the orchestrator) before the workflow continues. When an
execution runs again (after a crash, a retry or a resume) the workflow function
starts over from the top, and each step whose key is in the recorded history
returns its recorded result (or raises its recorded error) without running.

Keys: the caller names each step. Calling the same name again in one execution
gets an occurrence suffix (``charge``, ``charge#2``, ...), so loops need no
hand-made keys and a repeated name never silently reuses the first result.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import random as _random
import traceback
import uuid as _uuid
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any, ParamSpec, TypeVar, overload

import pydantic

from polos import _logs  # logs: the step key on records logged inside the step
from polos.errors import (
    ConfigurationError,
    ExecutionCancelled,
    NonDeterminismError,
    StepExecutionError,
    StepTimeoutError,
)
from polos.protocol import ErrorInfo, StepKind, StepRecord, now_ms

from ._context import StepInfo, _current_step
from ._retry import DEFAULT_STEP_RETRY, RetryPolicy, qualified_name
from ._runtime import CancelSignal, StepRecorder
from ._serialize import from_json_value, return_annotation, to_json_value, type_name

P = ParamSpec("P")
T = TypeVar("T")

MAX_KEY_LENGTH = 200

STEP_TIMEOUT_TYPE = "polos.StepTimeoutError"
"""``error.type`` of a step whose last attempt ran out of its ``timeout``."""

MAX_STEP_TIMEOUT_S = 366 * 24 * 3600.0


def step_timeout_seconds(value: object) -> float | None:
    """Validate a step's ``timeout=`` (seconds or a timedelta; None: no timeout)."""
    if value is None:
        return None
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise ConfigurationError(
            f"a step timeout must be seconds or a timedelta, not {type(value).__name__}"
        )
    if not 0 < seconds <= MAX_STEP_TIMEOUT_S:  # also refuses NaN
        raise ConfigurationError(
            f"a step timeout must be positive (and at most a year), not {seconds:g} s"
        )
    return seconds


class StateBox:
    """Holds the workflow's state model and the JSON of its last recorded snapshot."""

    def __init__(self, model: pydantic.BaseModel | None, recorded_json: str | None) -> None:
        self.model = model
        self.recorded_json = recorded_json

    def changed_snapshot(self) -> tuple[bool, Any]:
        """``(True, json_value)`` if the state changed since the last snapshot."""
        if self.model is None:
            return False, None
        current = self.model.model_dump_json()
        if current == self.recorded_json:
            return False, None
        self.recorded_json = current
        return True, self.model.model_dump(mode="json")

    def restore(self, value: Any) -> None:
        """Overwrite the state in place with a recorded snapshot (references stay valid)."""
        if self.model is None:
            return
        restored = type(self.model).model_validate(value)
        for name in type(self.model).model_fields:
            object.__setattr__(self.model, name, getattr(restored, name))
        self.recorded_json = self.model.model_dump_json()


class BaseStep:
    """Keys, replay and ``run``: the core of the step API (``Step`` adds the waiting steps)."""

    def __init__(
        self,
        *,
        execution_id: str,
        history: list[StepRecord],
        recorder: StepRecorder,
        state: StateBox | None = None,
        code_fingerprint: str | None = None,
        recorded_fingerprint: str | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: _random.Random | None = None,
        cancel: CancelSignal | None = None,
    ) -> None:
        self._execution_id = execution_id
        self._history = {r.key: r for r in history}
        self._recorder = recorder
        self._state = state or StateBox(None, None)
        self._code_fingerprint = code_fingerprint
        self._recorded_fingerprint = recorded_fingerprint
        self._sleep = sleep
        self._rng = rng or _random.Random()
        self._cancel = cancel or CancelSignal()
        self._occurrences: dict[str, int] = {}
        self._seq = max((r.seq for r in history), default=0)
        self._pending: list[StepRecord] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._in_flight: dict[str, int] = {}
        self.parked = False
        """Whether the attempt ended at a wait step (set just before WaitPending is raised)."""

    # ------------------------------------------------------------------ keys and replay

    def _next_key(self, key: str) -> str:
        if self._cancel.reason is not None:  # every step call of a cancelled attempt stops here
            raise ExecutionCancelled(self._cancel.reason)
        if not key:
            raise ConfigurationError(f"a step key must be a non-empty string, not {key!r}")
        if "#" in key:
            raise ConfigurationError(
                f"step key {key!r} must not contain '#' (it marks repeated keys)"
            )
        if any(ord(c) < 32 or c == "\x7f" for c in key):
            raise ConfigurationError(f"step key {key!r} must not contain control characters")
        if len(key) > MAX_KEY_LENGTH:
            raise ConfigurationError(
                f"step key {key[:40]!r}... is longer than {MAX_KEY_LENGTH} characters"
            )
        n = self._occurrences.get(key, 0) + 1
        self._occurrences[key] = n
        return key if n == 1 else f"{key}#{n}"

    def _replayed(self, full_key: str, kind: StepKind, call: str) -> StepRecord | None:
        record = self._history.get(full_key)
        if record is None:
            return None
        if record.kind != kind:
            changed = (
                f" The code changed since this execution started (fingerprint "
                f"{self._recorded_fingerprint} → {self._code_fingerprint})."
                if self._recorded_fingerprint
                and self._recorded_fingerprint != self._code_fingerprint
                else ""
            )
            raise NonDeterminismError(
                f"step {full_key!r} of execution {self._execution_id} was recorded as a "
                f"'{record.kind}' step, but replay now reaches ctx.step.{call}() with that key.{changed} "
                "Replay must make the same step calls in the same order as the original run: keep the "
                "old code path for executions already running (or give the new step a new key), and "
                "do not branch on values that change between runs (use ctx.step.now/random/uuid)."
            )
        if record.has_state:
            self._state.restore(record.state)
        return record

    def _new_record(self, full_key: str, kind: StepKind, **fields: Any) -> StepRecord:
        self._seq += 1
        has_state, state = self._state.changed_snapshot()
        record = StepRecord(
            key=full_key, seq=self._seq, kind=kind, has_state=has_state, state=state, **fields
        )
        self._history[full_key] = record
        return record

    async def flush(self) -> None:
        """Make every pending recorded value (uuid/now/random) durable."""
        if self._pending:
            pending, self._pending = self._pending, []
            await self._recorder.record(pending)

    @property
    def pending(self) -> bool:
        """Whether values were recorded that are not durable yet."""
        return bool(self._pending)

    # ------------------------------------------------------------------ run

    # The async form first: an ``async def`` also matches ``Callable[P, T]`` (with T the
    # coroutine), so the other order would type ``await run(...)`` as a coroutine.
    @overload
    async def run(
        self, key: str, fn: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs
    ) -> T: ...

    @overload
    async def run(self, key: str, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T: ...

    async def run(
        self,
        key: str,
        fn: Callable[P, Any],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> Any:
        """Run ``fn(*args, **kwargs)`` once, durably, and return its result.

        ``fn`` may be sync (it runs in a thread) or async. Two keywords are this
        method's own, not passed to ``fn`` (wrap ``fn`` in a lambda or
        ``functools.partial`` to give it arguments with these names):

        * ``retry_policy=``: how failures are retried (default: 3 attempts with
          exponential backoff);
        * ``timeout=``: seconds (or a timedelta) each attempt may take. An async
          ``fn`` is cancelled at the timeout; a sync ``fn`` cannot be stopped (its
          thread finishes in the background) but the step stops waiting for it.
          A timed-out attempt is retried per the policy.

        Inside ``fn``, :func:`polos.current_step` gives the step's idempotency key.

        Raises:
            StepExecutionError: the function failed on every attempt (also on replay).
            StepTimeoutError: the last attempt ran out of its ``timeout`` (also on replay).
            NonDeterminismError: the key was recorded as another kind of step.
            ExecutionCancelled: the execution was cancelled (or timed out) meanwhile.
        """
        policy: Any = kwargs.pop("retry_policy", None)
        timeout: Any = kwargs.pop("timeout", None)
        return await self.run_as(StepKind.RUN, key, fn, args, kwargs, policy, timeout)

    async def run_as(
        self,
        kind: StepKind,
        key: str,
        fn: Callable[..., Any],
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        retry_policy: RetryPolicy | None = None,
        timeout: float | timedelta | None = None,
    ) -> Any:
        """:meth:`run` recorded as another kind of step (``llm``, ``tool``): agents use it so
        that the step log and the UI tell model calls and tool calls from other steps."""
        if retry_policy is not None and not isinstance(retry_policy, RetryPolicy):
            raise ConfigurationError("retry_policy must be a polos.RetryPolicy")
        seconds = step_timeout_seconds(timeout)
        full_key = self._next_key(key)
        record = self._replayed(full_key, kind, "run" if kind == StepKind.RUN else kind.value)
        if record is not None:
            return self._outcome(record, fn)
        try:
            # Values recorded with uuid/now/random must be durable before any side effect uses them.
            await self.flush()
            return await self._execute(
                full_key,
                fn,
                args,
                kwargs or {},
                retry_policy or DEFAULT_STEP_RETRY,
                seconds,
                kind,
            )
        except asyncio.CancelledError:
            self._raise_if_cancelled()
            raise

    async def _pause(self, seconds: float) -> None:
        """Sleep in this attempt (a short durable sleep); cancellation as in :meth:`run`."""
        try:
            await self._sleep(seconds)
        except asyncio.CancelledError:
            self._raise_if_cancelled()
            raise

    def _raise_if_cancelled(self) -> None:
        """Turn the asyncio cancellation of a cancelled execution into ``ExecutionCancelled``."""
        if self._cancel.reason is not None:
            raise ExecutionCancelled(self._cancel.reason) from None

    def run_sync(
        self,
        key: str,
        fn: Callable[P, T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """:meth:`run` for synchronous workflows (which run in a worker thread)."""
        return self._in_loop("run_sync", self.run(key, fn, *args, **kwargs))

    def _in_loop(self, call: str, coro: Coroutine[Any, Any, T]) -> T:
        """Run a step coroutine on the worker's loop from a synchronous workflow's thread."""
        loop = self._loop
        if loop is None:
            coro.close()
            raise ConfigurationError(
                f"ctx.step.{call}() is only available inside a synchronous workflow"
            )
        future = asyncio.run_coroutine_threadsafe(coro, loop)
        self._cancel.track(future)
        try:
            return future.result()
        except concurrent.futures.CancelledError:  # an Exception: never let user code see it
            raise ExecutionCancelled(self._cancel.reason or "cancelled") from None

    def _outcome(self, record: StepRecord, fn: Callable[..., Any]) -> Any:
        if record.error is not None:
            cls = StepTimeoutError if record.error.type == STEP_TIMEOUT_TYPE else StepExecutionError
            raise cls(
                record.key,
                record.error.type,
                record.error.message,
                record.attempts,
                record.error.traceback,
            )
        return from_json_value(record.output, record.output_type, return_annotation(fn))

    async def _execute(
        self,
        full_key: str,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        policy: RetryPolicy,
        timeout: float | None = None,
        kind: StepKind = StepKind.RUN,
    ) -> Any:
        started = now_ms()
        self._in_flight[full_key] = started
        try:
            return await self._attempts(full_key, fn, args, kwargs, policy, started, timeout, kind)
        finally:
            del self._in_flight[full_key]

    async def _attempts(
        self,
        full_key: str,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        policy: RetryPolicy,
        started: int,
        timeout: float | None = None,
        kind: StepKind = StepKind.RUN,
    ) -> Any:
        attempt = 0
        while True:
            attempt += 1
            token = _current_step.set(StepInfo(self._execution_id, full_key, attempt))
            log_ids = _logs.bind(execution_id=self._execution_id, step_key=full_key)  # logs
            try:
                if timeout is None:
                    result = await self._call(fn, args, kwargs)
                else:
                    result = await self._call_with_timeout(full_key, fn, args, kwargs, timeout)
            except Exception as exc:
                if attempt < policy.max_attempts and policy.is_retryable(exc):
                    await self._sleep(policy.delay(attempt, self._rng))
                    continue
                timed_out = isinstance(exc, StepTimeoutError)
                error = ErrorInfo(
                    type=STEP_TIMEOUT_TYPE if timed_out else qualified_name(type(exc)),
                    message=exc.error_message if isinstance(exc, StepTimeoutError) else str(exc),
                    traceback="".join(traceback.format_exception(exc)),
                )
                record = self._new_record(
                    full_key,
                    kind,
                    error=error,
                    attempts=attempt,
                    started_at=started,
                    completed_at=now_ms(),
                )
                await self._recorder.record([record])
                cls = StepTimeoutError if timed_out else StepExecutionError
                raise cls(full_key, error.type, error.message, attempt, error.traceback) from exc
            finally:
                _logs.unbind(log_ids)  # logs
                _current_step.reset(token)
            output = to_json_value(result, f"step {full_key!r}")
            record = self._new_record(
                full_key,
                kind,
                output=output,
                output_type=type_name(result),
                attempts=attempt,
                started_at=started,
                completed_at=now_ms(),
            )
            await self._recorder.record([record])
            return result

    @classmethod
    async def _call_with_timeout(
        cls,
        full_key: str,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        timeout: float,
    ) -> Any:
        """One attempt, given up after ``timeout`` seconds (a sync ``fn``'s thread runs on)."""
        scope = asyncio.timeout(timeout)
        try:
            async with scope:
                return await cls._call(fn, args, kwargs)
        except TimeoutError:
            if not scope.expired():
                raise  # the function's own TimeoutError
            raise StepTimeoutError(
                full_key, STEP_TIMEOUT_TYPE, f"step {full_key!r} timed out after {timeout:g} s"
            ) from None

    @staticmethod
    async def _call(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        call_method = getattr(type(fn), "__call__", None)  # noqa: B004 - async callable objects
        if inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(call_method):
            return await fn(*args, **kwargs)
        result = await asyncio.to_thread(fn, *args, **kwargs)
        if inspect.isawaitable(result):
            result = await result
        return result

    # ------------------------------------------------------------------ recorded values

    def _value(self, key: str, kind: StepKind, make: Callable[[], Any]) -> Any:
        full_key = self._next_key(key)
        record = self._replayed(full_key, kind, kind.value)
        if record is not None:
            return record.output
        value = make()
        ts = now_ms()
        self._pending.append(
            self._new_record(full_key, kind, output=value, started_at=ts, completed_at=ts)
        )
        return value

    def uuid(self, key: str) -> str:
        """A random UUID (string), the same on every replay of this execution."""
        return str(self._value(key, StepKind.UUID, lambda: str(_uuid.uuid4())))

    def now(self, key: str) -> datetime:
        """The current UTC time (millisecond precision), the same on every replay."""
        ms = self._value(key, StepKind.NOW, now_ms)
        return datetime.fromtimestamp(ms / 1000, tz=UTC)

    def random(self, key: str) -> float:
        """A random float in [0, 1), the same on every replay."""
        return float(self._value(key, StepKind.RANDOM, self._rng.random))
