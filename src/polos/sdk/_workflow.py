"""``@workflow``: turns an ``async def`` (or a plain ``def``) into a durable workflow."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any, Generic, Literal, Protocol, TypeVar, overload

import pydantic

from polos.errors import ConfigurationError, PayloadValidationError
from polos.protocol import WorkflowSpec, run_timeout_ms

from ._fingerprint import fingerprint
from ._flow import Queue, queue_option
from ._retry import DEFAULT_MAX_RECOVERY_ATTEMPTS, DEFAULT_WORKFLOW_RETRY, RetryPolicy
from ._schedules import schedule_option
from ._serialize import from_json_value, return_annotation, to_json_value
from ._wait_types import BatchEventPayload, EventPayload

R = TypeVar("R")
_ID_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.:/")


class InvokingClient(Protocol):
    """What :meth:`Workflow.run` needs from a client (``PolosClient`` provides it)."""

    async def invoke(self, workflow_id: str, payload: Any = None, **options: Any) -> Any:
        """Start an execution; returns a handle with ``result()``."""


def _payload_annotation(fn: Callable[..., Any], param: inspect.Parameter) -> Any:
    """Resolve the payload parameter's annotation on its own.

    Resolving all hints at once fails when *another* annotation cannot be
    resolved (e.g. ``ctx: WorkflowContext`` imported under ``TYPE_CHECKING``);
    the payload must still be validated, or fail loudly.
    """
    try:
        hints = typing.get_type_hints(fn)
    except Exception:
        hints = {}
    if param.name in hints:
        return hints[param.name]
    raw = param.annotation
    if raw is inspect.Parameter.empty:
        return Any
    if isinstance(raw, str):
        try:
            return eval(raw, getattr(fn, "__globals__", {}))
        except Exception as exc:
            raise ConfigurationError(
                f"cannot resolve the payload annotation {raw!r} of workflow {fn.__name__!r}: {exc}"
            ) from exc
    return raw


class Workflow(Generic[R]):
    """A durable workflow. Create it with :func:`workflow`; register it with a ``Worker``."""

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        id: str | None = None,
        description: str | None = None,
        state_schema: type[pydantic.BaseModel] | None = None,
        retry: RetryPolicy | None = None,
        max_recovery_attempts: int = DEFAULT_MAX_RECOVERY_ATTEMPTS,
        options: Mapping[str, Any] | None = None,
        kind: Literal["workflow", "agent", "tool"] = "workflow",
    ) -> None:
        self.fn = fn
        self.id = id if id is not None else fn.__name__
        if not self.id or not set(self.id) <= _ID_CHARS or len(self.id) > 200:
            raise ConfigurationError(
                f"workflow id {self.id!r} must be 1-200 characters of letters, digits and _-.:/"
            )
        self.description = description if description is not None else inspect.getdoc(fn)
        self.state_schema = state_schema
        given: object = state_schema  # users may pass anything at run time
        if given is not None and not (
            isinstance(given, type) and issubclass(given, pydantic.BaseModel)
        ):
            raise ConfigurationError("state_schema must be a pydantic BaseModel subclass")
        self.retry = retry or DEFAULT_WORKFLOW_RETRY
        if max_recovery_attempts < 1:
            raise ConfigurationError("max_recovery_attempts must be at least 1")
        self.max_recovery_attempts = max_recovery_attempts
        self.options = {k: v for k, v in (options or {}).items() if v is not None}
        self.kind = kind
        self.is_async = inspect.iscoroutinefunction(fn)
        self.fingerprint = fingerprint(fn)
        self.result_annotation = return_annotation(fn)
        self._payload_annotation, self.takes_payload = self._inspect_signature(fn)
        self._payload_adapter: pydantic.TypeAdapter[Any] | None = None

    @staticmethod
    def _inspect_signature(fn: Callable[..., Any]) -> tuple[Any, bool]:
        params = list(inspect.signature(fn).parameters.values())
        positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        if not positional or len(positional) > 2 or len(positional) != len(params):
            raise ConfigurationError(
                f"workflow {fn.__name__!r} must take (ctx) or (ctx, payload), "
                f"not ({', '.join(p.name for p in params)})"
            )
        if len(positional) == 1:
            return Any, False
        return _payload_annotation(fn, positional[1]), True

    # ------------------------------------------------------------------ worker side

    def spec(self) -> WorkflowSpec:
        """What the worker registers with the orchestrator."""
        return WorkflowSpec(
            id=self.id,
            kind=self.kind,
            fingerprint=self.fingerprint,
            retry=self.retry.to_spec(),
            max_recovery_attempts=self.max_recovery_attempts,
            description=self.description,
            options=to_json_value(self.options, f"options of workflow {self.id!r}"),
        )

    def parse_payload(self, raw: Any, trigger: Any = None) -> Any:
        """Validate a stored payload into the annotated type.

        ``trigger`` is the event metadata of an execution started by an event: a
        payload annotated ``EventPayload`` / ``BatchEventPayload`` gets the event(s)
        with their topic and seq; any other annotation gets the data.

        Raises:
            PayloadValidationError: naming each offending field.
        """
        if trigger is not None:
            raw = self._event_payload(raw, trigger)
        if self._payload_annotation is Any:
            return raw
        if self._payload_adapter is None:
            self._payload_adapter = pydantic.TypeAdapter(self._payload_annotation)
        try:
            return self._payload_adapter.validate_python(raw)
        except pydantic.ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '(payload)'}: {e['msg']}"
                for e in exc.errors()[:10]
            )
            raise PayloadValidationError(
                f"payload of workflow {self.id!r} is invalid: {problems}"
            ) from None

    def _event_payload(self, raw: Any, trigger: Any) -> Any:
        if self._payload_annotation is EventPayload and isinstance(trigger, dict):
            return {**trigger, "data": raw}
        if self._payload_annotation is BatchEventPayload and isinstance(trigger, list):
            data = raw if isinstance(raw, list) else [raw] * len(trigger)
            return {"events": [{**m, "data": d} for m, d in zip(trigger, data, strict=False)]}
        return raw

    def new_state(self, raw: Any, has_state: bool) -> pydantic.BaseModel | None:
        """The initial ``ctx.state``: the recorded snapshot, or the schema's defaults."""
        if self.state_schema is None:
            return None
        if has_state and raw is not None:
            return self.state_schema.model_validate(raw)
        return self.state_schema()

    def parse_result(self, raw: Any) -> R:
        """Rebuild a stored result as the workflow's annotated return type."""
        return from_json_value(raw, None, self.result_annotation)  # type: ignore[no-any-return]

    # ------------------------------------------------------------------ client side

    async def invoke(self, client: InvokingClient, payload: Any = None, **options: Any) -> Any:
        """Start an execution and return its handle (see ``PolosClient.invoke``)."""
        return await client.invoke(self.id, payload, **options)

    async def run(
        self,
        client: InvokingClient,
        payload: Any = None,
        *,
        timeout: float | timedelta | None = None,
        **options: Any,
    ) -> R:
        """Start an execution, wait for it, and return its result as the annotated type.

        Raises:
            WorkflowFailedError: the execution failed (carries the remote error type and message).
            polos.TimeoutError: ``timeout`` passed first.
        """
        handle = await client.invoke(self.id, payload, **options)
        raw = await handle.result(timeout=timeout)
        return self.parse_result(raw)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the undecorated function (handy in unit tests)."""
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"Workflow(id={self.id!r})"


@overload
def workflow(fn: Callable[..., Any], /) -> Workflow[Any]: ...


@overload
def workflow(
    *,
    id: str | None = None,
    description: str | None = None,
    queue: str | Queue | Mapping[str, Any] | None = None,
    trigger_on_event: str | None = None,
    batch_size: int = 1,
    batch_timeout_seconds: float | None = None,
    schedule: str | bool | Mapping[str, Any] | None = None,
    state_schema: type[pydantic.BaseModel] | None = None,
    retry: RetryPolicy | None = None,
    max_recovery_attempts: int = DEFAULT_MAX_RECOVERY_ATTEMPTS,
    timeout: float | timedelta | None = None,
    timeout_counts_waits: bool = False,
) -> Callable[[Callable[..., Any]], Workflow[Any]]: ...


def workflow(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    id: str | None = None,
    description: str | None = None,
    queue: str | Queue | Mapping[str, Any] | None = None,
    trigger_on_event: str | None = None,
    batch_size: int = 1,
    batch_timeout_seconds: float | None = None,
    schedule: str | bool | Mapping[str, Any] | None = None,
    state_schema: type[pydantic.BaseModel] | None = None,
    retry: RetryPolicy | None = None,
    max_recovery_attempts: int = DEFAULT_MAX_RECOVERY_ATTEMPTS,
    timeout: float | timedelta | None = None,
    timeout_counts_waits: bool = False,
) -> Workflow[Any] | Callable[[Callable[..., Any]], Workflow[Any]]:
    """Declare a durable workflow: ``@workflow`` or ``@workflow(id="...", ...)``.

    The function takes ``(ctx)`` or ``(ctx, payload)``; annotate ``payload`` with a
    pydantic model to get it validated and passed as that model. ``retry`` applies
    when the function raises (default: no retry); a crash of the worker is always
    recovered, up to ``max_recovery_attempts`` times. ``queue``, ``trigger_on_event``,
    ``batch_size``, ``batch_timeout_seconds``, ``schedule`` and ``timeout`` are
    registered with the orchestrator.

    ``timeout`` (seconds or a timedelta) is the run timeout: an execution that has
    run that long ends ``failed`` with ``polos.WorkflowTimeoutError`` (not retried),
    its coroutine is cancelled and its children are cancelled. It counts the time
    the execution runs on workers, over all attempts; time parked at a wait (a
    suspend, a durable sleep, an event, child workflows) does not count unless
    ``timeout_counts_waits=True``, which counts everything from the first start
    (that setting also applies to a per-invocation ``run_timeout``, which overrides
    ``timeout``).
    """
    if batch_size < 1:
        raise ConfigurationError("batch_size must be at least 1")
    if batch_timeout_seconds is not None and batch_timeout_seconds <= 0:
        raise ConfigurationError("batch_timeout_seconds must be positive")
    if trigger_on_event is not None and (
        not 0 < len(trigger_on_event) <= 300
        or any(c.isspace() or ord(c) < 32 for c in trigger_on_event)
    ):
        raise ConfigurationError(
            f"trigger_on_event must be a topic of 1-300 characters without spaces, "
            f"not {trigger_on_event!r}"
        )
    timeout_ms = run_timeout_ms(timeout, "timeout")
    timeout_s = timeout_ms / 1000 if timeout_ms is not None else None
    options = {
        "queue": queue_option(queue),
        "trigger_on_event": trigger_on_event,
        "batch_size": batch_size if batch_size != 1 else None,
        "batch_timeout_seconds": batch_timeout_seconds,
        "schedule": schedule_option(schedule, trigger_on_event),
        "timeout_seconds": timeout_s,
        "timeout_counts_waits": True if timeout_counts_waits else None,
    }

    def decorate(func: Callable[..., Any]) -> Workflow[Any]:
        return Workflow(
            func,
            id=id,
            description=description,
            state_schema=state_schema,
            retry=retry,
            max_recovery_attempts=max_recovery_attempts,
            options=options,
        )

    if fn is not None:
        return decorate(fn)
    return decorate
