"""Flow control on the wire: queues, concurrency keys and rate limits."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

NAME_PATTERN = r"^[A-Za-z0-9_.:/@-]+$"
"""Queue and rate-limit names: letters, digits and ``_ . : / @ -``."""

MAX_PERIOD_MS = 31 * 24 * 3600 * 1000
"""Longest rate-limit period: 31 days."""


class RateLimitSpec(BaseModel):
    """A named limit of ``limit`` units per sliding ``period_ms``, shared by every worker."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, pattern=NAME_PATTERN)
    limit: int = Field(ge=1, le=1_000_000_000, description="Units allowed per period.")
    period_ms: int = Field(ge=1, le=MAX_PERIOD_MS, description="The sliding window, in ms.")


class QueueSpec(BaseModel):
    """A queue's limits, as declared by a workflow (``@workflow(queue=Queue(...))``)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, pattern=NAME_PATTERN)
    concurrency_limit: int | None = Field(
        default=None, ge=1, le=1_000_000, description="Executions running at once, all keys."
    )
    per_key_limit: int | None = Field(
        default=None, ge=1, le=1_000_000, description="Executions running at once per key."
    )
    rate_limit: RateLimitSpec | None = Field(
        default=None, description="Executions started per period, whole queue."
    )
    per_key_rate_limit: RateLimitSpec | None = Field(
        default=None, description="Executions started per period, each concurrency key."
    )


class QueueKeyInfo(BaseModel):
    """One concurrency key of a queue."""

    key: str
    running: int
    queued: int


class RateLimitInfo(BaseModel):
    """A rate limit and the units used in its current window."""

    name: str
    limit: int
    period_ms: int
    used: int = Field(description="Units granted in the last period (all keys).")
    keys: int = Field(default=0, description="Keys with usage in the last period.")


class QueueInfo(BaseModel):
    """A queue's limits and what is in it right now."""

    name: str
    concurrency_limit: int | None
    per_key_limit: int | None
    rate_limit: str | None
    per_key_rate_limit: str | None
    running: int = Field(description="Executions holding a slot (running).")
    queued: int = Field(description="Executions runnable now but waiting for a slot or a worker.")
    delayed: int = Field(description="Queued executions not yet due (retry backoff).")
    waiting: int = Field(description="Executions parked at a wait: they hold no slot.")
    rate_blocked_until: int | None = Field(
        default=None, description="While its rate limit is exhausted: when units free up."
    )
    keys: list[QueueKeyInfo] = Field(
        default_factory=list, description="Per concurrency key (the busiest 100)."
    )


class QueueList(BaseModel):
    """``GET /queues``."""

    items: list[QueueInfo]
    rate_limits: list[RateLimitInfo]


class RateLimitRequest(BaseModel):
    """``PUT /rate-limits/{name}``: define or change a rate limit."""

    model_config = ConfigDict(extra="forbid")

    limit: int = Field(ge=1, le=1_000_000_000)
    period_seconds: float = Field(gt=0, le=MAX_PERIOD_MS / 1000)


class AcquireSpec(BaseModel):
    """``ctx.step.acquire``: what an acquire wait asks for (the ``data`` of its ``WaitSpec``)."""

    model_config = ConfigDict(extra="forbid")

    limit: str = Field(min_length=1, max_length=200, pattern=NAME_PATTERN)
    units: int = Field(default=1, ge=1, le=1_000_000_000)
    key: str = Field(default="", max_length=500, description="A separate window per key.")
    deadline: int | None = Field(
        default=None, description="Give up (WaitTimeoutError) if not granted by then (epoch ms)."
    )
    define: RateLimitSpec | None = Field(
        default=None, description="Create or update the rate limit first (acquire(RateLimit(...)))."
    )
