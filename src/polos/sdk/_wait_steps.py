"""The waiting steps of ``ctx.step``: suspend, timers, events, child workflows.

A wait parks the execution: the orchestrator records the wait, the workflow
unwinds (:class:`WaitPending`) and the worker slot is free. When the wait ends
(resume, event, timer, children done, or timeout) the orchestrator records the
step's outcome and queues the execution; the next attempt replays up to the
wait step, which returns that outcome without waiting again.

Short sleeps (up to ``POLOS_WAIT_THRESHOLD_SECONDS``, default 5 s) run in the
worker instead: their wake-up time is recorded first, so a crash mid-sleep
resumes the same sleep rather than starting it over.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn, Protocol

import pydantic

from polos.errors import ChildWorkflowError, ConfigurationError, WaitTimeoutError
from polos.protocol import (
    AcquireSpec,
    ChildSpec,
    ErrorInfo,
    PublishSpec,
    StepKind,
    StepRecord,
    WaitKind,
    WaitSpec,
    now_ms,
    run_timeout_ms,
)

from ._flow import RateLimit, RateLimitGrant
from ._runtime import ParkRequest, WaitPending
from ._serialize import to_json_value
from ._steps import BaseStep
from ._wait_types import (
    BatchStepResult,
    BatchWorkflowInput,
    ChildHandle,
    EventPayload,
    ResumeData,
    child_execution_id,
)
from ._workflow import Workflow

MAX_CHILDREN = 1000
"""Most children one step may start."""


def _threshold_s() -> float:
    raw = os.environ.get("POLOS_WAIT_THRESHOLD_SECONDS", "5")
    try:
        return max(0.0, float(raw))
    except ValueError:
        raise ConfigurationError(
            f"POLOS_WAIT_THRESHOLD_SECONDS must be a number of seconds, not {raw!r}"
        ) from None


def _seconds(value: float | timedelta, what: str) -> float:
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if seconds < 0:
        raise ConfigurationError(f"{what} must not be negative (got {seconds:g} s)")
    return seconds


def _expiry(started: int, timeout: float | timedelta | None) -> int | None:
    if timeout is None:
        return None
    return started + round(_seconds(timeout, "timeout") * 1000)


def _workflow_id(target: Workflow[Any] | str) -> str:
    if isinstance(target, Workflow):
        return target.id
    if target:
        return target
    raise ConfigurationError(f"expected a @workflow or a workflow id, not {target!r}")


def _one(
    workflow: Workflow[Any] | str, payload: Any, options: dict[str, Any]
) -> BatchWorkflowInput:
    allowed = {"initial_state", "queue", "concurrency_key", "priority", "run_timeout"}
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ConfigurationError(
            f"unknown child option(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}"
        )
    return BatchWorkflowInput(workflow, payload, **options)


class AgentInvocation(Protocol):
    """What ``agent.with_input(...)`` returns: the agent (a workflow) and its payload."""

    @property
    def workflow(self) -> Workflow[Any]:
        """The agent's workflow."""

    @property
    def payload(self) -> Any:
        """The run's payload."""

    @property
    def options(self) -> dict[str, Any]:
        """Child options (queue, concurrency_key, priority, run_timeout)."""


class Step(BaseStep):
    """The durable step API of one execution attempt (``ctx.step``)."""

    # ------------------------------------------------------------------ parking

    async def _park(
        self,
        full_key: str,
        kind: StepKind,
        spec: WaitSpec,
        *,
        started: int,
        children: Sequence[ChildSpec] = (),
    ) -> NoReturn:
        """Record the wait and end the attempt (raises :class:`WaitPending`)."""
        await self._send_wait(full_key, kind, spec, started=started, children=children)
        self.parked = True
        raise WaitPending(f"execution {self._execution_id} waits at step {full_key!r}")

    async def _send_wait(
        self,
        full_key: str,
        kind: StepKind,
        spec: WaitSpec,
        *,
        started: int,
        children: Sequence[ChildSpec] = (),
    ) -> Any:
        """Record a wait step; returns what the orchestrator answered (e.g. a grant)."""
        if self._in_flight:
            running = ", ".join(repr(k) for k in sorted(self._in_flight))
            raise ConfigurationError(
                f"ctx.step.{kind.value} step {full_key!r} cannot wait while other steps of this "
                f"execution are still running ({running}): await them before waiting"
            )
        await self.flush()
        previous = self._state.recorded_json
        has_state, state = self._state.changed_snapshot()
        self._seq += 1
        try:
            answer = await self._recorder.park(
                ParkRequest(
                    key=full_key,
                    seq=self._seq,
                    kind=kind,
                    started_at=started,
                    spec=spec,
                    children=children,
                    has_state=has_state,
                    state=state,
                )
            )
        except Exception:
            self._state.recorded_json = previous  # the snapshot was not recorded
            raise
        return answer

    @staticmethod
    def _raise_timeout(record: StepRecord) -> None:
        if record.error is not None:
            raise WaitTimeoutError(record.key, record.error.message, record.completed_at)

    # ------------------------------------------------------------------ suspend

    async def suspend(
        self, key: str, data: Any = None, *, timeout: float | timedelta | None = None
    ) -> ResumeData:
        """Pause until someone resumes this step, and return what they sent (``.data``).

        The worker is released while waiting (no coroutine, no slot). Resume with
        ``client.resume(execution_id, key, data)``, ``polos resume`` or
        ``POST /api/v1/executions/{id}/resume``. ``data`` is shown to whoever
        resumes it (listed by ``client.list_waits(kind="suspend")``).

        Raises:
            WaitTimeoutError: ``timeout`` passed first.
        """
        full_key = self._next_key(key)
        record = self._replayed(full_key, StepKind.SUSPEND, "suspend")
        if record is not None:
            self._raise_timeout(record)
            return ResumeData.model_validate(record.output or {})
        started = now_ms()
        spec = WaitSpec(
            kind=WaitKind.SUSPEND,
            data=to_json_value(data, f"data of suspend step {full_key!r}"),
            expires_at=_expiry(started, timeout),
        )
        await self._park(full_key, StepKind.SUSPEND, spec, started=started)

    # ------------------------------------------------------------------ timers

    async def sleep(self, key: str, duration: float | timedelta) -> None:
        """Sleep durably for ``duration`` (seconds or a timedelta), measured from the first run.

        Long sleeps release the worker; the orchestrator wakes the execution on
        time, across worker and orchestrator restarts.
        """
        seconds = _seconds(duration, "sleep duration")
        await self._sleep_until(key, "sleep", lambda started: started + round(seconds * 1000))

    async def wait_for(
        self,
        key: str,
        *,
        seconds: float = 0,
        minutes: float = 0,
        hours: float = 0,
        days: float = 0,
        weeks: float = 0,
    ) -> None:
        """Sleep durably for the sum of the given units (see :meth:`sleep`)."""
        delta = timedelta(seconds=seconds, minutes=minutes, hours=hours, days=days, weeks=weeks)
        seconds_total = _seconds(delta, "wait_for duration")
        await self._sleep_until(
            key, "wait_for", lambda started: started + round(seconds_total * 1000)
        )

    async def wait_until(self, key: str, when: datetime) -> None:
        """Sleep durably until ``when`` (a timezone-aware datetime; naive means UTC)."""
        if not isinstance(when, datetime):
            raise ConfigurationError(f"wait_until needs a datetime, not {type(when).__name__}")
        aware = when if when.tzinfo is not None else when.replace(tzinfo=UTC)
        due = round(aware.timestamp() * 1000)
        await self._sleep_until(key, "wait_until", lambda _started: due)

    async def _sleep_until(self, key: str, call: str, due_of: Any) -> None:
        full_key = self._next_key(key)
        record = self._replayed(full_key, StepKind.SLEEP, call)
        if record is not None:
            until = int((record.output or {}).get("until", 0))
            remaining = until - now_ms()
            if remaining > 0:  # an in-process sleep that a crash interrupted
                await self._pause(remaining / 1000)
            return
        started = now_ms()
        due = int(due_of(started))
        remaining_s = (due - started) / 1000
        if remaining_s <= _threshold_s():
            # Short: sleep here. Record the wake-up time first, so that a replay after a
            # crash sleeps only what is left.
            await self.flush()
            self._pending.append(
                self._new_record(
                    full_key,
                    StepKind.SLEEP,
                    output={"until": due},
                    started_at=started,
                    completed_at=due,
                )
            )
            await self.flush()
            if remaining_s > 0:
                await self._pause(remaining_s)
            return
        spec = WaitSpec(kind=WaitKind.SLEEP, expires_at=due)
        await self._park(full_key, StepKind.SLEEP, spec, started=started)

    # ------------------------------------------------------------------ events

    async def wait_for_event(
        self, key: str, topic: str, *, timeout: float | timedelta | None = None
    ) -> EventPayload:
        """Wait for the first event on ``topic`` published after this step was first reached.

        Raises:
            WaitTimeoutError: ``timeout`` passed first.
        """
        full_key = self._next_key(key)
        record = self._replayed(full_key, StepKind.WAIT_EVENT, "wait_for_event")
        if record is not None:
            self._raise_timeout(record)
            return EventPayload.model_validate(record.output)
        started = now_ms()
        try:
            spec = WaitSpec(kind=WaitKind.EVENT, topic=topic, expires_at=_expiry(started, timeout))
        except pydantic.ValidationError:
            raise ConfigurationError(
                f"invalid topic {topic!r}: use 1-300 characters without spaces"
            ) from None
        await self._park(full_key, StepKind.WAIT_EVENT, spec, started=started)

    async def publish_event(self, key: str, topic: str, data: Any = None) -> EventPayload:
        """Publish an event on ``topic``, once: a replay or a retry never publishes it again."""
        full_key = self._next_key(key)
        record = self._replayed(full_key, StepKind.PUBLISH, "publish_event")
        if record is not None:
            return EventPayload.model_validate({**(record.output or {}), "data": data})
        value = to_json_value(data, f"data of publish_event step {full_key!r}")
        try:
            publish = PublishSpec(topic=topic, data=value)
        except pydantic.ValidationError:
            raise ConfigurationError(
                f"invalid topic {topic!r}: use 1-300 characters without spaces"
            ) from None
        await self.flush()
        ts = now_ms()
        step = self._new_record(full_key, StepKind.PUBLISH, started_at=ts, completed_at=ts)
        meta = await self._recorder.record_effect(step, publish=publish)
        return EventPayload.model_validate({**(meta or {}), "topic": topic, "data": value})

    # ------------------------------------------------------------------ children

    def _children(self, full_key: str, items: Sequence[BatchWorkflowInput]) -> list[ChildSpec]:
        if len(items) > MAX_CHILDREN:
            raise ConfigurationError(
                f"step {full_key!r} starts {len(items)} children; at most {MAX_CHILDREN} per step"
            )
        specs = []
        for index, item in enumerate(items):
            if not isinstance(item, BatchWorkflowInput):
                raise ConfigurationError(
                    f"batch items must be polos.BatchWorkflowInput, not {type(item).__name__}"
                )
            what = f"payload of child {index} of step {full_key!r}"
            specs.append(
                ChildSpec(
                    execution_id=child_execution_id(self._execution_id, full_key, index),
                    workflow_id=_workflow_id(item.id),
                    payload=to_json_value(item.payload, what),
                    index=index,
                    queue=item.queue,
                    concurrency_key=item.concurrency_key,
                    priority=item.priority,
                    has_state=item.initial_state is not None,
                    initial_state=to_json_value(item.initial_state, what),
                    run_timeout_ms=run_timeout_ms(
                        item.run_timeout, f"run_timeout of child {index}"
                    ),
                )
            )
        return specs

    def _handles(self, full_key: str, specs: Sequence[ChildSpec]) -> list[ChildHandle]:
        return [
            ChildHandle(
                id=s.execution_id,
                workflow_id=s.workflow_id,
                parent_execution_id=self._execution_id,
                step_key=full_key,
                index=s.index,
            )
            for s in specs
        ]

    async def invoke(
        self, key: str, workflow: Workflow[Any] | str, payload: Any = None, **options: Any
    ) -> ChildHandle:
        """Start a child execution and go on at once (fire and forget); returns its handle.

        ``options``: ``initial_state``, ``queue``, ``concurrency_key``, ``priority``,
        ``run_timeout``.
        """
        handles = await self._start_children(key, [_one(workflow, payload, options)], "invoke")
        return handles[0]

    async def batch_invoke(
        self, key: str, items: Sequence[BatchWorkflowInput]
    ) -> list[ChildHandle]:
        """Start several child executions and go on at once; returns their handles in order."""
        return await self._start_children(key, items, "batch_invoke")

    async def _start_children(
        self, key: str, items: Sequence[BatchWorkflowInput], call: str
    ) -> list[ChildHandle]:
        full_key = self._next_key(key)
        record = self._replayed(full_key, StepKind.INVOKE, call)
        if record is not None:
            return [ChildHandle.model_validate(h) for h in record.output or []]
        specs = self._children(full_key, items)
        handles = self._handles(full_key, specs)
        await self.flush()
        ts = now_ms()
        step = self._new_record(
            full_key,
            StepKind.INVOKE,
            output=[h.model_dump(mode="json") for h in handles],
            started_at=ts,
            completed_at=ts,
        )
        if specs:
            await self._recorder.record_effect(step, children=specs)
        return handles

    async def invoke_and_wait(
        self, key: str, workflow: Workflow[Any] | str, payload: Any = None, **options: Any
    ) -> Any:
        """Start a child execution, wait for it (holding no worker), and return its result.

        The result is rebuilt as the child's annotated return type when ``workflow``
        is the ``@workflow`` object. ``options`` as for :meth:`invoke`.

        Raises:
            ChildWorkflowError: the child failed or was cancelled.
        """
        full_key = self._next_key(key)
        record = self._replayed(full_key, StepKind.INVOKE_WAIT, "invoke_and_wait")
        if record is not None:
            outcome = record.output or {}
            result = self._child_result(outcome, workflow)
            if not result.success:
                error = result.error or ErrorInfo(type="polos.ExecutionCancelled", message="")
                raise ChildWorkflowError(
                    result.execution_id,
                    result.workflow_id,
                    result.status,
                    error.type,
                    error.message,
                )
            return result.result
        specs = self._children(full_key, [_one(workflow, payload, options)])
        spec = WaitSpec(kind=WaitKind.CHILD, data={"batch": False})
        await self._park(full_key, StepKind.INVOKE_WAIT, spec, started=now_ms(), children=specs)

    async def batch_invoke_and_wait(
        self, key: str, items: Sequence[BatchWorkflowInput]
    ) -> list[BatchStepResult]:
        """Fan out: start the children, wait for all of them, return their outcomes in order.

        Each outcome says whether that child succeeded; a failed child does not raise.
        """
        full_key = self._next_key(key)
        record = self._replayed(full_key, StepKind.INVOKE_WAIT, "batch_invoke_and_wait")
        if record is not None:
            by_index = {i: item.id for i, item in enumerate(items)}
            return [
                self._child_result(outcome, by_index.get(int(outcome.get("index", 0)), ""))
                for outcome in record.output or []
            ]
        if not items:
            return []
        specs = self._children(full_key, items)
        spec = WaitSpec(kind=WaitKind.CHILD, data={"batch": True})
        await self._park(full_key, StepKind.INVOKE_WAIT, spec, started=now_ms(), children=specs)

    # ------------------------------------------------------------------ agents

    async def agent_invoke_and_wait(self, key: str, run: AgentInvocation) -> Any:
        """Run an agent (``agent.with_input(...)``) as a child execution, wait for it
        without holding a worker, and return its ``AgentResult``.

        Raises:
            ChildWorkflowError: the agent run failed or was cancelled.
        """
        return await self.invoke_and_wait(key, run.workflow, run.payload, **run.options)

    async def agent_invoke(self, key: str, run: AgentInvocation) -> ChildHandle:
        """Start an agent run as a child execution without waiting for it."""
        return await self.invoke(key, run.workflow, run.payload, **run.options)

    async def batch_agent_invoke_and_wait(
        self, key: str, runs: Sequence[AgentInvocation]
    ) -> list[BatchStepResult]:
        """Fan out agent runs; their outcomes (``.result`` an ``AgentResult``) in input order."""
        items = [_one(r.workflow, r.payload, dict(r.options)) for r in runs]
        return await self.batch_invoke_and_wait(key, items)

    # ------------------------------------------------------------------ rate limits

    async def acquire(
        self,
        limit: str | RateLimit,
        units: int = 1,
        *,
        key: str | None = None,
        timeout: float | timedelta | None = None,
        step_key: str | None = None,
    ) -> RateLimitGrant:
        """Take ``units`` of a rate limit, waiting (parked, holding no worker) until it has room.

        ``limit`` is a rate limit's name (defined with ``Worker(rate_limits=[...])``, a
        queue's ``rate_limit``, or ``client.set_rate_limit``) or a :class:`RateLimit`,
        which defines (or updates) it too. ``key`` gives each key its own window of the
        same limit (a tenant, a user). The grant is a step (``acquire:<limit>`` unless
        ``step_key`` is given): replay returns it without taking units again. Units are
        never given back; they leave the window when ``period`` has passed.

        Raises:
            WaitTimeoutError: no room before ``timeout``.
            StepExecutionError: the limit is unknown, or ``units`` exceeds it.
        """
        name = limit.name if isinstance(limit, RateLimit) else limit
        given: object = units  # callers may pass anything at run time
        if isinstance(given, bool) or not isinstance(given, int) or units < 1:
            raise ConfigurationError(f"acquire units must be a positive integer, not {units!r}")
        full_key = self._next_key(step_key or f"acquire:{name}")
        record = self._replayed(full_key, StepKind.ACQUIRE, "acquire")
        if record is not None:
            self._raise_timeout(record)
            return RateLimitGrant.model_validate(_grant_fields(record.output))
        started = now_ms()
        try:
            request = AcquireSpec(
                limit=name,
                units=units,
                key=key or "",
                deadline=_expiry(started, timeout),
                define=limit.spec() if isinstance(limit, RateLimit) else None,
            )
        except pydantic.ValidationError as exc:
            raise ConfigurationError(
                f"invalid acquire of {name!r}: {exc.errors()[0]['msg']}"
            ) from None
        spec = WaitSpec(kind=WaitKind.ACQUIRE, data=request.model_dump(mode="json"))
        answer = await self._send_wait(full_key, StepKind.ACQUIRE, spec, started=started)
        if isinstance(answer, dict) and "granted" in answer:
            return RateLimitGrant.model_validate(_grant_fields(answer["granted"]))
        self.parked = True
        raise WaitPending(f"execution {self._execution_id} waits for rate limit {name!r}")

    def acquire_sync(
        self,
        limit: str | RateLimit,
        units: int = 1,
        *,
        key: str | None = None,
        timeout: float | timedelta | None = None,
        step_key: str | None = None,
    ) -> RateLimitGrant:
        """:meth:`acquire` for synchronous workflows."""
        return self._in_loop(
            "acquire_sync",
            self.acquire(limit, units, key=key, timeout=timeout, step_key=step_key),
        )

    # ------------------------------------------------------------------ synchronous workflows

    def suspend_sync(
        self, key: str, data: Any = None, *, timeout: float | timedelta | None = None
    ) -> ResumeData:
        """:meth:`suspend` for synchronous workflows."""
        return self._in_loop("suspend_sync", self.suspend(key, data, timeout=timeout))

    def sleep_sync(self, key: str, duration: float | timedelta) -> None:
        """:meth:`sleep` for synchronous workflows."""
        self._in_loop("sleep_sync", self.sleep(key, duration))

    def wait_for_event_sync(
        self, key: str, topic: str, *, timeout: float | timedelta | None = None
    ) -> EventPayload:
        """:meth:`wait_for_event` for synchronous workflows."""
        return self._in_loop(
            "wait_for_event_sync", self.wait_for_event(key, topic, timeout=timeout)
        )

    def publish_event_sync(self, key: str, topic: str, data: Any = None) -> EventPayload:
        """:meth:`publish_event` for synchronous workflows."""
        return self._in_loop("publish_event_sync", self.publish_event(key, topic, data))

    def invoke_and_wait_sync(
        self, key: str, workflow: Workflow[Any] | str, payload: Any = None, **options: Any
    ) -> Any:
        """:meth:`invoke_and_wait` for synchronous workflows."""
        return self._in_loop(
            "invoke_and_wait_sync", self.invoke_and_wait(key, workflow, payload, **options)
        )

    @staticmethod
    def _child_result(outcome: dict[str, Any], workflow: Workflow[Any] | str) -> BatchStepResult:
        status = str(outcome.get("status", "failed"))
        raw_error = outcome.get("error")
        success = status == "completed"
        result = outcome.get("result")
        if success and isinstance(workflow, Workflow):
            result = workflow.parse_result(result)
        return BatchStepResult(
            workflow_id=str(outcome.get("workflow_id", "")),
            execution_id=str(outcome.get("execution_id", "")),
            success=success,
            result=result if success else None,
            error=ErrorInfo.model_validate(raw_error) if raw_error else None,
            status=status,
        )


def _grant_fields(output: Any) -> dict[str, Any]:
    """A recorded grant as RateLimitGrant fields (``granted_at`` is epoch ms on the wire)."""
    fields = dict(output or {})
    at = fields.get("granted_at")
    if isinstance(at, int | float):
        fields["granted_at"] = datetime.fromtimestamp(at / 1000, tz=UTC)
    return fields
