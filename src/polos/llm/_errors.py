"""Turning the official clients' exceptions into the polos LLM errors, and retrying them.

The adapters construct the ``openai`` / ``anthropic`` clients with ``max_retries=0``: the
one retry loop is here, so that every provider honours ``retry-after`` the same way and
the number of attempts is the one the user configured, not the client's default.

Classification works on exceptions of either library without importing it (importing
``anthropic`` alone costs seconds): an exception raised by a library means the library is
already in :data:`sys.modules`, so its classes are looked up there.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import sys
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, TypeVar

from polos.errors import (
    LLMAuthenticationError,
    LLMBadRequestError,
    LLMError,
    LLMRateLimitError,
    LLMUnavailableError,
)

T = TypeVar("T")

_CLIENT_LIBRARIES = ("openai", "anthropic")

# Error types a provider reports inside a body (a failed stream, an ``error`` SSE event)
# rather than through the HTTP status.
_UNAVAILABLE_TYPES = frozenset(
    {"overloaded_error", "api_error", "server_error", "timeout_error", "service_unavailable"}
)
_RATE_LIMIT_TYPES = frozenset({"rate_limit_error", "rate_limit_exceeded", "rate_limit"})
_QUOTA_CODES = frozenset({"insufficient_quota", "billing_hard_limit_reached"})


@dataclass(frozen=True)
class RetryPolicy:
    """How an adapter retries retryable errors (429, 5xx, 529, timeouts, network).

    Attributes:
        max_retries: retries after the first attempt (``0``: one attempt only).
        base_delay: first backoff in seconds; doubled after each failed retry.
        max_delay: cap of the exponential backoff.
        max_retry_after: a ``retry-after`` longer than this is not waited for in-process:
            the rate-limit error is raised at once, so the durable step layer can retry
            it later instead of holding a worker slot.
        jitter: fraction of the backoff randomised, so that many agents rate limited at
            the same moment do not retry in lockstep.
    """

    max_retries: int = 3
    base_delay: float = 0.5
    max_delay: float = 20.0
    max_retry_after: float = 60.0
    jitter: float = 0.1

    def delay(self, error: LLMError, attempt: int) -> float | None:
        """Seconds to wait before retry number ``attempt + 1``, or None to give up."""
        if not error.retryable or attempt >= self.max_retries:
            return None
        if isinstance(error, LLMRateLimitError) and error.retry_after is not None:
            if error.retry_after > self.max_retry_after:
                return None
            return max(error.retry_after, 0.0)
        backoff = min(self.base_delay * (2.0**attempt), self.max_delay)
        return backoff * (1 - self.jitter * random.random())


def parse_retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds to wait, from ``retry-after-ms`` or ``retry-after`` (seconds or an HTTP date)."""
    if not headers:
        return None
    lowered = {key.lower(): value for key, value in headers.items()}
    millis = lowered.get("retry-after-ms")
    if millis is not None:
        try:
            return max(float(millis) / 1000.0, 0.0)
        except ValueError:
            pass
    value = lowered.get("retry-after")
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


def _library_classes(name: str) -> tuple[type[BaseException], ...]:
    """The class ``name`` of each client library already imported."""
    found: list[type[BaseException]] = []
    for library in _CLIENT_LIBRARIES:
        module = sys.modules.get(library)
        cls = getattr(module, name, None) if module is not None else None
        if isinstance(cls, type) and issubclass(cls, BaseException):
            found.append(cls)
    return tuple(found)


def _error_fields(body: object) -> tuple[str | None, str | None, str | None]:
    """(message, type, code) from an OpenAI (``{message, type, code}``, possibly wrapped
    in ``{"error": ...}``) or Anthropic (``{"type": "error", "error": {type, message}}``) body."""
    if not isinstance(body, Mapping):
        return (body if isinstance(body, str) and body else None), None, None
    inner = body.get("error")
    data: Mapping[str, Any] = inner if isinstance(inner, Mapping) else body
    message, kind, code = data.get("message"), data.get("type"), data.get("code")
    return (
        message if isinstance(message, str) else None,
        kind if isinstance(kind, str) else None,
        str(code) if code is not None else None,
    )


def _from_status(
    status: int,
    message: str,
    kind: str | None,
    code: str | None,
    retry_after: float | None,
    *,
    provider: str,
) -> LLMError:
    if status == 429:
        if code in _QUOTA_CODES or kind in _QUOTA_CODES:
            # Out of credit: waiting does not help, so not a (retryable) rate limit.
            return LLMError(message, provider=provider, status_code=status)
        return LLMRateLimitError(
            message, provider=provider, status_code=status, retry_after=retry_after
        )
    if status in (401, 403):
        return LLMAuthenticationError(message, provider=provider, status_code=status)
    if status in (408, 409) or status >= 500:
        # 408/409 are the transient 4xx the official clients retry themselves; 529 is
        # Anthropic's "overloaded".
        return LLMUnavailableError(message, provider=provider, status_code=status)
    if status >= 400:
        return LLMBadRequestError(message, provider=provider, status_code=status)
    return error_from_type(message, kind, code, provider=provider, status=status)


def error_from_type(
    message: str, kind: str | None, code: str | None, *, provider: str, status: int | None
) -> LLMError:
    """An error reported inside a 200 stream: classify by its declared type."""
    if kind in _RATE_LIMIT_TYPES or code in _RATE_LIMIT_TYPES:
        return LLMRateLimitError(message, provider=provider, status_code=status)
    if kind in _UNAVAILABLE_TYPES or code in _UNAVAILABLE_TYPES:
        return LLMUnavailableError(message, provider=provider, status_code=status)
    if kind in ("invalid_request_error", "invalid_request"):
        return LLMBadRequestError(message, provider=provider, status_code=status)
    if kind in ("authentication_error", "permission_error"):
        return LLMAuthenticationError(message, provider=provider, status_code=status)
    return LLMError(message, provider=provider, status_code=status)


def classify_error(exc: BaseException, *, provider: str) -> LLMError | None:
    """The polos error for an exception of a client library, or None if it is not one.

    429 → :class:`LLMRateLimitError` (``retry_after`` from the headers); 401/403 →
    :class:`LLMAuthenticationError`; 400/404/422 (and other 4xx) →
    :class:`LLMBadRequestError`; 5xx, 529, 408/409, timeouts and connection errors →
    :class:`LLMUnavailableError`. Any other error of the libraries is a plain
    :class:`LLMError`.
    """
    if isinstance(exc, LLMError):
        return exc
    if isinstance(exc, _library_classes("APIConnectionError")):
        # Includes APITimeoutError, a subclass in both libraries.
        return LLMUnavailableError(f"{provider}: {exc}", provider=provider)
    if isinstance(exc, _library_classes("APIStatusError")):
        status = int(getattr(exc, "status_code", 0) or 0)
        response = getattr(exc, "response", None)
        headers = getattr(response, "headers", None)
        detail, kind, code = _error_fields(getattr(exc, "body", None))
        message = f"{provider}: HTTP {status}: {detail or exc}"
        return _from_status(
            status,
            message,
            kind,
            code,
            parse_retry_after(headers) if isinstance(headers, Mapping) else None,
            provider=provider,
        )
    if isinstance(exc, _library_classes("APIError")):
        # An error without an HTTP status: an ``error`` event in the middle of a stream.
        detail, kind, code = _error_fields(getattr(exc, "body", None))
        message = f"{provider}: {detail or exc}"
        return error_from_type(message, kind, code, provider=provider, status=None)
    if isinstance(exc, _library_classes("OpenAIError") + _library_classes("AnthropicError")):
        return LLMError(f"{provider}: {exc}", provider=provider)
    if isinstance(exc, TimeoutError):
        return LLMUnavailableError(f"{provider}: timed out", provider=provider)
    return None


async def call_with_retries(
    call: Callable[[], Awaitable[T]], *, provider: str, policy: RetryPolicy
) -> T:
    """``await call()``, retrying retryable errors per ``policy``; raises the polos error."""
    attempt = 0
    while True:
        try:
            return await call()
        except Exception as exc:
            error = classify_error(exc, provider=provider)
            if error is None:
                raise
            delay = policy.delay(error, attempt)
            if delay is None:
                if error is exc:
                    raise
                raise error from exc
        await asyncio.sleep(delay)
        attempt += 1


async def stream_with_retries(
    open_stream: Callable[[], AsyncGenerator[T, None]], *, provider: str, policy: RetryPolicy
) -> AsyncIterator[T]:
    """Iterate ``open_stream()``, retrying it while it failed before its first item.

    Once an item was handed to the caller a failure is raised, not retried: a second
    attempt would repeat deltas the caller already consumed.
    """
    attempt = 0
    while True:
        started = False
        try:
            async with aclosing(open_stream()) as stream:
                async for item in stream:
                    started = True
                    yield item
            return
        except Exception as exc:
            error = classify_error(exc, provider=provider)
            if error is None:
                raise
            delay = None if started else policy.delay(error, attempt)
            if delay is None:
                if error is exc:
                    raise
                raise error from exc
        await asyncio.sleep(delay)
        attempt += 1
