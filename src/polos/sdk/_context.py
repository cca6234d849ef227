"""What a running workflow sees: :class:`WorkflowContext` and the current step's info."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pydantic

from polos.errors import ConfigurationError, SerializationError
from polos.protocol import PublishSpec

from ._serialize import to_json_value

if TYPE_CHECKING:
    from ._wait_steps import Step

log = logging.getLogger("polos.sdk")


@dataclass(frozen=True, slots=True)
class StepInfo:
    """Facts about the step whose function is running now.

    Attributes:
        execution_id: the execution the step belongs to.
        step_key: the step's key, with its occurrence suffix (``charge``, ``charge#2``).
        attempt: 1 for the first try of this step function, 2 for its first retry...
        idempotency_key: ``"<execution_id>:<step_key>"``, stable across retries, replays
            and crashes: pass it to external APIs (e.g. Stripe's ``Idempotency-Key``) so
            that a step that re-runs after a crash does not repeat its side effect.
    """

    execution_id: str
    step_key: str
    attempt: int

    @property
    def idempotency_key(self) -> str:
        """Stable key for external APIs: ``"<execution_id>:<step_key>"``."""
        return f"{self.execution_id}:{self.step_key}"


_current_step: contextvars.ContextVar[StepInfo | None] = contextvars.ContextVar(
    "polos_current_step", default=None
)
_current_context: contextvars.ContextVar[WorkflowContext | None] = contextvars.ContextVar(
    "polos_current_context", default=None
)


def current_step() -> StepInfo:
    """Info about the step function running now (call it from inside the step function).

    Raises:
        ConfigurationError: when called outside a step function.
    """
    info = _current_step.get()
    if info is None:
        raise ConfigurationError("polos.current_step() must be called from inside a step function")
    return info


def current_context() -> WorkflowContext | None:
    """The :class:`WorkflowContext` of the workflow running in this task, if any."""
    return _current_context.get()


class WorkflowContext:
    """Passed as the first argument of every workflow.

    Attributes:
        execution_id: id of this execution.
        workflow_id: id of the workflow.
        attempt: how many times the execution was started (1 on the first run; a crash
            or a retry starts another attempt, which replays the recorded steps).
        parent_execution_id: the parent's id for a child workflow.
        root_execution_id: the id of the top of the execution tree.
        created_at: when the execution was created (epoch ms).
        code_fingerprint: the fingerprint of the code that first ran this execution.
        step: the durable step API (``await ctx.step.run("key", fn, ...)``).
    """

    def __init__(
        self,
        *,
        execution_id: str,
        workflow_id: str,
        attempt: int,
        step: Step,
        state: Any = None,
        parent_execution_id: str | None = None,
        root_execution_id: str | None = None,
        created_at: int = 0,
        code_fingerprint: str | None = None,
    ) -> None:
        self.execution_id = execution_id
        self.workflow_id = workflow_id
        self.attempt = attempt
        self.step = step
        self._state = state
        self.parent_execution_id = parent_execution_id
        self.root_execution_id = root_execution_id or execution_id
        self.created_at = created_at
        self.code_fingerprint = code_fingerprint
        # Replay bookkeeping for emit(): the recorded keys not reached yet (None: not
        # computed yet), and the seq of the last recorded step when the attempt began.
        self._unreached: list[str] | None = None
        self._live = False
        self._recorded_seq: int = getattr(step, "_seq", 0)  # tests may build one without a step
        try:  # emit_sync() from a thread hands its emits to this loop
            self._loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None

    @property
    def state(self) -> Any:
        """The workflow's ``state_schema`` instance, persisted with each step and restored on replay."""
        if self._state is None:
            raise ConfigurationError(
                f"workflow {self.workflow_id!r} has no state: declare @workflow(state_schema=YourModel)"
            )
        return self._state

    @property
    def has_state(self) -> bool:
        """Whether the workflow declared a ``state_schema``."""
        return self._state is not None

    # ------------------------------------------------------------------ live events

    async def emit(self, topic: str, data: Any) -> None:
        """Publish ``data`` on ``topic`` now, as a live event that is not a step.

        For progress reports and streaming (an agent's model output, chunk by chunk):
        callers follow the topic with ``client.events.stream(topic, after=0)``. Each
        call appends one event to the topic's log (so a follower that comes late, or
        reads from another orchestrator, still gets it from ``seq`` 0), with
        ``source_execution_id`` set to this execution.

        Guarantees (weaker than a step's, on purpose, so that it costs almost nothing):

        * not recorded and not replayed: an emit adds no step record and does not
          change step keys; an attempt that replays recorded steps does *not* emit
          again what it emitted between them (emits resume where the replay ends);
        * at most once per attempt, best effort: emits are sent in small batches
          (coalesced for a few milliseconds) and are dropped, not retried, if the
          connection to the orchestrator is down or the attempt lost its lease. A
          crashed attempt's emits stay in the log and the next attempt emits afresh
          for the part it does not replay, so a follower can see a partial stream
          followed by a new one;
        * ordered: one execution's emits on a topic are logged in the order they were
          made, and before the execution's end (its result, failure or wait) and
          before any later ``ctx.step.publish_event`` of the same attempt.

        Emitted events are ordinary events: they also start ``trigger_on_event``
        workflows and end ``wait_for_event`` waits on that topic. Use
        ``ctx.step.publish_event`` for events that must be published exactly once.

        Raises:
            ConfigurationError: the topic is invalid (1-300 characters, no spaces).
            SerializationError: ``data`` cannot be turned into JSON.
        """
        value = self._emit_value(topic, data)
        await self._send_emit(topic, value, self._in_own_step())

    def emit_sync(self, topic: str, data: Any) -> None:
        """:meth:`emit` from synchronous code: a synchronous workflow, or a sync step function.

        Blocks only until the event is handed to the worker (not until it is delivered).
        """
        value = self._emit_value(topic, data)
        in_step = self._in_own_step()  # the context variable lives in this thread
        loop = self._loop
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if loop is None or running is loop:
            raise ConfigurationError(
                "ctx.emit_sync() is for synchronous code running in a thread; "
                "use `await ctx.emit(...)` in async code"
            )
        try:
            future = asyncio.run_coroutine_threadsafe(self._send_emit(topic, value, in_step), loop)
            future.result()
        except (RuntimeError, concurrent.futures.CancelledError) as exc:
            # The attempt (or the worker's loop) is over: a late emit is dropped, never raised.
            log.debug("emit on %r from execution %s dropped: %s", topic, self.execution_id, exc)

    def _emit_value(self, topic: str, data: Any) -> Any:
        try:
            PublishSpec(topic=topic)
        except pydantic.ValidationError:
            raise ConfigurationError(
                f"invalid topic {topic!r}: use 1-300 characters without spaces"
            ) from None
        try:
            return to_json_value(data, f"ctx.emit({topic!r})")
        except SerializationError as exc:
            raise SerializationError(
                f"ctx.emit({topic!r}): a {type(data).__name__} cannot be sent as JSON "
                f"({exc.__cause__ or exc}); emit JSON-compatible data, a pydantic model or "
                "a dataclass"
            ) from exc

    def _in_own_step(self) -> bool:
        info = _current_step.get()
        return info is not None and info.execution_id == self.execution_id

    async def _send_emit(self, topic: str, value: Any, in_step: bool) -> None:
        if self.step._cancel.cancelled:
            return  # the orchestrator would drop it: the execution left this worker
        if not in_step and self._replaying():
            return
        await self.step._recorder.emit(topic, [value])

    def _replaying(self) -> bool:
        """Whether the attempt is still replaying recorded steps (its emits are then skipped).

        The replay is over once every recorded step key has been reached again, or as
        soon as the attempt makes or runs a step of its own. A step function that is
        running was never replayed, so an emit from inside one is always live.
        """
        if self._live:
            return False
        step = self.step
        if step._in_flight or step._seq > self._recorded_seq:
            self._live = True
            return False
        if self._unreached is None:
            self._unreached = list(step._history)
        occurrences = step._occurrences
        self._unreached = [k for k in self._unreached if not _reached(k, occurrences)]
        self._live = not self._unreached
        return not self._live

    def __repr__(self) -> str:
        return f"WorkflowContext(workflow_id={self.workflow_id!r}, execution_id={self.execution_id!r}, attempt={self.attempt})"


def _reached(key: str, occurrences: dict[str, int]) -> bool:
    """Whether the step call that makes ``key`` (``name`` or ``name#n``) has happened yet."""
    name, sep, n = key.rpartition("#")
    if not sep:
        return occurrences.get(key, 0) >= 1
    return occurrences.get(name, 0) >= (int(n) if n.isdigit() else 1)
