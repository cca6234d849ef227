"""Flow control declarations: queues with concurrency limits and keys, rate limits."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pydantic

from polos.errors import ConfigurationError
from polos.protocol import MAX_PERIOD_MS, NAME_PATTERN, QueueSpec, RateLimitSpec

_NAME = re.compile(NAME_PATTERN)


def _check_name(what: str, name: object) -> str:
    if not isinstance(name, str) or not 0 < len(name) <= 200 or not _NAME.match(name):
        raise ConfigurationError(
            f"{what} name must be 1-200 letters, digits or _ . : / @ -, not {name!r}"
        )
    return name


def _check_limit(what: str, value: object) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ConfigurationError(f"{what} must be a positive integer or None, not {value!r}")


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``limit`` units per sliding ``period``, shared by every worker and replica.

    A unit is what you say it is: one execution start (on a queue), one request,
    or a number of tokens (``ctx.step.acquire(limit, units=n)``). The window
    slides: in *any* span of ``period`` no more than ``limit`` units are granted.

    Attributes:
        name: the limit's name (``"openai-tpm"``); steps refer to it by name.
        limit: units per period.
        period: the window (a timedelta, or seconds).
    """

    name: str
    limit: int
    period: timedelta | float = timedelta(minutes=1)

    def __post_init__(self) -> None:
        _check_name("rate limit", self.name)
        _check_limit("RateLimit.limit", self.limit)
        ms = self.period_ms
        if not 1 <= ms <= MAX_PERIOD_MS:
            raise ConfigurationError(
                f"RateLimit.period must be between 1 ms and 31 days, not {self.period!r}"
            )

    @property
    def period_ms(self) -> int:
        """The period in milliseconds."""
        seconds = self.period.total_seconds() if isinstance(self.period, timedelta) else self.period
        return round(float(seconds) * 1000)

    def spec(self) -> RateLimitSpec:
        """The wire form registered with the orchestrator."""
        return RateLimitSpec(name=self.name, limit=self.limit, period_ms=self.period_ms)


@dataclass(frozen=True, slots=True)
class Queue:
    """A named queue shared by workflows; its limits hold across all workers and replicas.

    Executions that wait for a slot wait in the queue (in the database), not on a
    worker; executions parked at a wait (suspend, sleep, events...) hold no slot.

    Attributes:
        name: the queue's name.
        concurrency_limit: how many executions of the queue may run at once, all keys
            together (None: no limit).
        per_key_limit: how many may run at once for each ``concurrency_key`` given at
            invoke time (None: keys share the queue's limit only).
        rate_limit: executions *started* per period, whole queue.
        per_key_rate_limit: executions started per period, for each concurrency key.
    """

    name: str
    concurrency_limit: int | None = None
    per_key_limit: int | None = None
    rate_limit: RateLimit | None = None
    per_key_rate_limit: RateLimit | None = None

    def __post_init__(self) -> None:
        _check_name("queue", self.name)
        _check_limit("Queue.concurrency_limit", self.concurrency_limit)
        _check_limit("Queue.per_key_limit", self.per_key_limit)
        for field_name in ("rate_limit", "per_key_rate_limit"):
            value = getattr(self, field_name)
            if value is not None and not isinstance(value, RateLimit):
                raise ConfigurationError(f"Queue.{field_name} must be a RateLimit, not {value!r}")

    def spec(self) -> QueueSpec:
        """The wire form registered with the orchestrator."""
        return QueueSpec(
            name=self.name,
            concurrency_limit=self.concurrency_limit,
            per_key_limit=self.per_key_limit,
            rate_limit=self.rate_limit.spec() if self.rate_limit else None,
            per_key_rate_limit=self.per_key_rate_limit.spec() if self.per_key_rate_limit else None,
        )


def queue(
    name: str,
    concurrency_limit: int | None = None,
    *,
    per_key_limit: int | None = None,
    rate_limit: RateLimit | None = None,
    per_key_rate_limit: RateLimit | None = None,
) -> Queue:
    """Shorthand for :class:`Queue`."""
    return Queue(name, concurrency_limit, per_key_limit, rate_limit, per_key_rate_limit)


def queue_option(value: str | Queue | Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The JSON form of a workflow's ``queue=`` argument (validated)."""
    if value is None:
        return None
    if isinstance(value, str):
        return {"name": _check_name("queue", value)}
    if isinstance(value, Queue):
        spec = value.spec()
    elif isinstance(value, Mapping):
        try:
            spec = QueueSpec.model_validate(dict(value))
        except pydantic.ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5]
            )
            raise ConfigurationError(f"invalid queue {dict(value)!r}: {problems}") from None
    else:
        raise ConfigurationError(
            f"queue must be a name, a Queue or a dict, not {type(value).__name__}"
        )
    return spec.model_dump(exclude_none=True)


class RateLimitGrant(pydantic.BaseModel):
    """What ``ctx.step.acquire`` returns: the units granted, and when."""

    limit: str
    units: int
    key: str = ""
    granted_at: datetime
