"""Retry policies for steps and workflows."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from polos.errors import ConfigurationError
from polos.protocol import RetryPolicySpec


def _seconds(value: float | timedelta) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """How often, and how far apart, to retry a failing step or workflow.

    The delay before attempt ``n + 1`` is
    ``min(initial_interval * backoff_coefficient ** (n - 1), max_interval)``,
    spread by ``±jitter`` (a fraction) so that many failing runs do not retry in step.

    Attributes:
        max_attempts: total attempts, the first included (1 = never retry).
        initial_interval: delay before the first retry (seconds or timedelta).
        backoff_coefficient: growth factor of the delay.
        max_interval: cap on the delay.
        jitter: random spread of each delay, as a fraction (0.2 = ±20 %).
        non_retryable_errors: exception types (or their names) that fail at once.
    """

    max_attempts: int = 3
    initial_interval: float | timedelta = 1.0
    backoff_coefficient: float = 2.0
    max_interval: float | timedelta = 60.0
    jitter: float = 0.2
    non_retryable_errors: Sequence[type[BaseException] | str] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigurationError("RetryPolicy.max_attempts must be at least 1")
        if self.backoff_coefficient < 1:
            raise ConfigurationError("RetryPolicy.backoff_coefficient must be at least 1")
        if not 0 <= self.jitter <= 1:
            raise ConfigurationError("RetryPolicy.jitter must be between 0 and 1")
        if _seconds(self.initial_interval) < 0 or _seconds(self.max_interval) < 0:
            raise ConfigurationError("RetryPolicy intervals must not be negative")

    def to_spec(self) -> RetryPolicySpec:
        """The wire form the orchestrator stores (without the error types)."""
        return RetryPolicySpec(
            max_attempts=self.max_attempts,
            initial_interval_ms=round(_seconds(self.initial_interval) * 1000),
            backoff_coefficient=self.backoff_coefficient,
            max_interval_ms=round(_seconds(self.max_interval) * 1000),
            jitter=self.jitter,
        )

    def delay(self, failures: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after ``failures`` failed attempts (1-based)."""
        unit = (rng or random).random()
        return self.to_spec().delay_ms(failures, unit) / 1000

    def is_retryable(self, exc: BaseException) -> bool:
        """Whether ``exc`` may be retried under this policy."""
        names: set[str] = set()
        for entry in self.non_retryable_errors:
            if isinstance(entry, str):
                names.add(entry)
            elif isinstance(exc, entry):
                return False
        return not ({type(exc).__name__, qualified_name(type(exc))} & names)


def qualified_name(cls: type) -> str:
    """``module.QualName`` of a class, short for builtins (``ValueError``)."""
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


DEFAULT_STEP_RETRY = RetryPolicy(max_attempts=3)
"""Steps retry twice (1 s, then 2 s later) before failing."""

DEFAULT_WORKFLOW_RETRY = RetryPolicy(max_attempts=1)
"""Workflows do not retry on an exception unless asked; crashes are always recovered."""

DEFAULT_MAX_RECOVERY_ATTEMPTS = 20
"""After this many crashed attempts (worker died mid-run), an execution ends failed."""
