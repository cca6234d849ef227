"""The one exception tree of Polos.

```
PolosError(Exception)
├── ConfigurationError            bad settings, bad decorator arguments, bad URLs
├── SerializationError            a value cannot be turned into JSON (or back)
├── StorageError                  the database failed or cannot be reached
│   └── InvalidValueError         the database refused a value (e.g. a NUL character)
├── ApiError                      the orchestrator answered with an error (status, code)
│   ├── ExecutionNotFoundError    unknown execution id (404)
│   ├── WorkflowNotFoundError     unknown workflow id (404)
│   ├── NotWaitingError           resume of a step that is not waiting (409)
│   ├── NotRetryableError         retry of an execution that is not failed/cancelled (409)
│   ├── SessionConflictError      a session memory save lost a version race (409)
│   └── PayloadTooLargeError      a payload, event, step output or result over its size limit (413)
├── OrchestratorUnavailableError  no orchestrator answered in time
├── WorkflowFailedError           a remote execution ended failed (carries error_type, message)
│   ├── WorkflowCancelledError    ... or was cancelled
│   └── WorkflowTimeoutError      ... or ran out of its run timeout
├── TimeoutError                  waiting for a result took longer than asked
├── StepExecutionError            a step failed after its retries (inside a workflow)
│   └── StepTimeoutError          ... because its last attempt ran out of its ``timeout``
├── WaitTimeoutError              suspend / wait_for_event ran out of time (inside a workflow)
├── ChildWorkflowError            a child execution failed or was cancelled (invoke_and_wait)
├── NonDeterminismError           replay found a step that does not match the log
├── PayloadValidationError        a payload does not fit the workflow's input model
├── LLMError                      a model provider refused or failed a call
│   ├── LLMRateLimitError         ... rate limited (429): retried after ``retry_after``
│   ├── LLMAuthenticationError    ... bad or missing API key (401/403): not retried
│   ├── LLMBadRequestError        ... the request is invalid (400/404/422): not retried
│   └── LLMUnavailableError       ... server error, overload or network failure: retried
└── AgentError                    an agent cannot go on (guardrail refused, hook stopped it,
    └── OutputValidationError     its answer does not fit output_schema even after repair)

BaseException
└── asyncio.CancelledError
    └── ExecutionCancelled        delivered into a cancelled (or timed-out) workflow; ``except
                                  Exception`` does not catch it, so user code cannot swallow it
```

Every error that crosses a process boundary is described by an
``ErrorInfo`` (type name, message, traceback) in :mod:`polos.protocol`; these
classes rebuild the user-facing exception from it.
"""

from __future__ import annotations

import asyncio
import builtins
from typing import Any

__all__ = [
    "AgentError",
    "ApiError",
    "ChildWorkflowError",
    "ConfigurationError",
    "ExecutionCancelled",
    "ExecutionNotFoundError",
    "InvalidValueError",
    "LLMAuthenticationError",
    "LLMBadRequestError",
    "LLMError",
    "LLMRateLimitError",
    "LLMUnavailableError",
    "NonDeterminismError",
    "NotRetryableError",
    "NotWaitingError",
    "OrchestratorUnavailableError",
    "OutputValidationError",
    "PayloadTooLargeError",
    "PayloadValidationError",
    "PolosError",
    "SerializationError",
    "SessionConflictError",
    "StepExecutionError",
    "StepTimeoutError",
    "StorageError",
    "TimeoutError",
    "WaitTimeoutError",
    "WorkflowCancelledError",
    "WorkflowFailedError",
    "WorkflowNotFoundError",
    "WorkflowTimeoutError",
]


class PolosError(Exception):
    """Root of every exception Polos raises on purpose."""


class ConfigurationError(PolosError):
    """Invalid configuration: settings, decorator arguments, URLs."""


class SerializationError(PolosError):
    """A value could not be serialised to JSON, or rebuilt from it."""


class StorageError(PolosError):
    """The database failed, refused a statement, or cannot be reached."""


class InvalidValueError(StorageError):
    """The database refused a value it cannot store (e.g. a NUL character in a text field).

    The request is wrong, not the database: retrying it cannot help.
    """


class ApiError(PolosError):
    """The orchestrator rejected a request.

    Attributes:
        status_code: the HTTP status.
        code: a stable machine-readable error code (``not_found``, ``invalid_request``...).
        message: the human-readable explanation sent by the orchestrator.
    """

    def __init__(self, status_code: int, code: str, message: str) -> None:
        super().__init__(f"{message} (HTTP {status_code}, {code})")
        self.status_code = status_code
        self.code = code
        self.message = message


class ExecutionNotFoundError(ApiError):
    """No execution has this id in the caller's project."""


class WorkflowNotFoundError(ApiError):
    """No worker ever registered a workflow with this id in the caller's project."""


class NotWaitingError(ApiError):
    """The execution is not waiting at that step: it was already resumed, it timed out,
    it never suspended there, or it finished."""


class NotRetryableError(ApiError):
    """The execution cannot be retried: it has not failed nor been cancelled, or it is a
    child (retry its top-level execution instead); the message says which."""


class SessionConflictError(ApiError):
    """A save of a session's memory was refused: the stored version is no longer the
    ``expected_version`` the save was based on (another run saved the session meanwhile,
    or it already exists when 0 was expected). Load the memory again, merge, and retry."""


class PayloadTooLargeError(ApiError):
    """A value is larger than the orchestrator accepts; the message names the limit.

    Raised by the client for HTTP 413 (a payload, event data or a request body over
    ``POLOS_MAX_PAYLOAD_BYTES``, ``POLOS_MAX_EVENT_BYTES`` or ``POLOS_MAX_BODY_BYTES``),
    and inside a workflow by the step whose output (or state, published event, child
    payload, wait data) is over its limit, e.g. ``output of step 'fetch' is 5,000,000
    bytes; the limit is 4,194,304 (POLOS_MAX_STEP_OUTPUT_BYTES)``. The step is not
    recorded: catch the error to go on without it, or let it fail the attempt (the
    workflow's retry policy applies). Sending it again unchanged cannot succeed.
    """

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.status_code, self.code, self.message))


class OrchestratorUnavailableError(PolosError):
    """The orchestrator could not be reached (after retrying)."""


class WorkflowFailedError(PolosError):
    """A remote execution ended in the ``failed`` state.

    Attributes:
        execution_id: the execution that failed.
        error_type: the qualified name of the exception raised by the workflow.
        error_message: its message.
        traceback: the remote traceback, when the worker sent one.
    """

    def __init__(
        self,
        execution_id: str,
        error_type: str,
        error_message: str,
        traceback: str | None = None,
    ) -> None:
        super().__init__(f"execution {execution_id} failed: {error_type}: {error_message}")
        self.execution_id = execution_id
        self.error_type = error_type
        self.error_message = error_message
        self.traceback = traceback


class WorkflowCancelledError(WorkflowFailedError):
    """A remote execution was cancelled before it finished."""


class WorkflowTimeoutError(WorkflowFailedError):
    """A remote execution ran longer than its run timeout and ended ``failed``.

    ``error_type`` is ``polos.WorkflowTimeoutError``. The run timeout counts the
    time the execution spent running on workers (every attempt), not the time it
    was parked at a wait, unless the workflow set ``timeout_counts_waits=True``.
    """


class TimeoutError(PolosError, builtins.TimeoutError):
    """Waiting for something (a result, a connection) took longer than allowed."""


class StepExecutionError(PolosError):
    """A step failed after exhausting its retry policy.

    The same exception is raised on the first run and on every replay, so code
    that catches it behaves identically in both.

    Attributes:
        step_key: the (suffixed) key of the failed step.
        error_type: qualified name of the exception the step function raised.
        error_message: its message.
        attempts: how many times the step function ran.
    """

    def __init__(
        self,
        step_key: str,
        error_type: str,
        error_message: str,
        attempts: int = 1,
        traceback: str | None = None,
    ) -> None:
        super().__init__(
            f"step {step_key!r} failed after {attempts} attempt(s): {error_type}: {error_message}"
        )
        self.step_key = step_key
        self.error_type = error_type
        self.error_message = error_message
        self.attempts = attempts
        self.traceback = traceback

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            type(self),
            (self.step_key, self.error_type, self.error_message, self.attempts, self.traceback),
        )


class StepTimeoutError(StepExecutionError):
    """A step ran longer than its ``timeout`` (``ctx.step.run(..., timeout=...)``).

    The timeout applies to each attempt: a timed-out attempt is retried like any
    other failure (list ``StepTimeoutError`` in ``non_retryable_errors`` to stop
    that). When the last attempt times out, the error is recorded and this
    exception is raised into the workflow, on the first run and on every replay.
    ``error_type`` is ``polos.StepTimeoutError``.

    A synchronous step function runs in a thread, which Python cannot stop: the
    step gives up at the timeout, but the thread finishes in the background.
    """


class WaitTimeoutError(PolosError):
    """A wait (``suspend``, ``wait_for_event``) reached its timeout before it was satisfied.

    Raised inside the workflow at the wait step, on the first run and on every
    replay. Catch it to take another path (escalate, reject, retry the wait
    under a new key).

    Attributes:
        step_key: the (suffixed) key of the wait step.
        expired_at: when the wait timed out (epoch ms).
    """

    def __init__(self, step_key: str, message: str, expired_at: int | None = None) -> None:
        super().__init__(message)
        self.step_key = step_key
        self.expired_at = expired_at

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.step_key, str(self), self.expired_at))


class ChildWorkflowError(PolosError):
    """A child execution started with ``invoke_and_wait`` failed or was cancelled.

    Attributes:
        execution_id: the child execution.
        workflow_id: its workflow.
        status: ``failed`` or ``cancelled``.
        error_type: qualified name of the child's exception.
        error_message: its message.
    """

    def __init__(
        self,
        execution_id: str,
        workflow_id: str,
        status: str,
        error_type: str,
        error_message: str,
    ) -> None:
        super().__init__(
            f"child execution {execution_id} ({workflow_id}) {status}: {error_type}: {error_message}"
        )
        self.execution_id = execution_id
        self.workflow_id = workflow_id
        self.status = status
        self.error_type = error_type
        self.error_message = error_message

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            type(self),
            (
                self.execution_id,
                self.workflow_id,
                self.status,
                self.error_type,
                self.error_message,
            ),
        )


class NonDeterminismError(PolosError):
    """Replay reached a step that does not match what the step log recorded.

    This means the workflow code changed (or depends on something that is not
    deterministic, like the wall clock or a random number outside
    ``ctx.step.now/random/uuid``) between the original run and the replay.
    """


class PayloadValidationError(PolosError):
    """The payload of an execution does not validate against the workflow's input model."""


class LLMError(PolosError):
    """A model provider refused or failed a call.

    Attributes:
        provider: ``openai``, ``anthropic``, ...
        status_code: the HTTP status, when there was an answer.
        retryable: whether trying again later can succeed.
    """

    retryable = False

    def __init__(self, message: str, *, provider: str = "", status_code: int | None = None) -> None:
        super().__init__(message)
        self.provider = provider
        self.status_code = status_code

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_llm_error, (type(self), str(self), self.__dict__))


def _rebuild_llm_error(cls: type[LLMError], message: str, state: dict[str, Any]) -> LLMError:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error


class LLMRateLimitError(LLMError):
    """The provider rate limited the call (HTTP 429); ``retry_after`` seconds, if it said."""

    retryable = True

    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        status_code: int | None = 429,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, provider=provider, status_code=status_code)
        self.retry_after = retry_after


class LLMAuthenticationError(LLMError):
    """The API key is missing, wrong or not allowed this model (HTTP 401/403)."""


class LLMBadRequestError(LLMError):
    """The provider rejected the request itself (HTTP 400/404/422): fix the request."""


class LLMUnavailableError(LLMError):
    """The provider failed or could not be reached (5xx, overload, timeout, network)."""

    retryable = True


class AgentError(PolosError):
    """An agent cannot go on: a guardrail refused, a hook stopped it, a tool is unknown."""


class OutputValidationError(AgentError):
    """The model's final answer does not fit the agent's ``output_schema``, even after the
    one repair attempt. ``raw`` is the last answer."""

    def __init__(self, message: str, raw: str = "") -> None:
        super().__init__(message)
        self.raw = raw

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.raw))


class ExecutionCancelled(asyncio.CancelledError):
    """Raised inside a workflow whose execution was cancelled or ran out of its run timeout.

    It derives from :class:`asyncio.CancelledError` (a :class:`BaseException`), so
    ``except Exception`` in user code does not swallow it, ``finally`` blocks and
    ``async with`` exits still run, and asyncio treats it as a cancellation. It is
    raised by the step the workflow was awaiting, and by every ``ctx.step`` call
    after that, so code that catches it anyway cannot make progress.

    Attributes:
        reason: why (``cancelled by api: ...``, ``run timeout of 30 s exceeded``...).
    """

    def __init__(self, reason: str = "cancelled") -> None:
        super().__init__(reason)
        self.reason = reason

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.reason,))
