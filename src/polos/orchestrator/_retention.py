"""Retention: settings, and the loop that prunes old finished work in bounded batches.

Off unless ``POLOS_RETENTION_DAYS`` (executions) or ``POLOS_EVENT_RETENTION_DAYS``
(events) is set. When on, every orchestrator runs one :class:`RetentionLoop`: a round
deletes batches of at most ``POLOS_RETENTION_BATCH`` rows (one short transaction each,
with a short pause between them so that the hot writers get the database) until a
batch comes back short, then the loop sleeps ``POLOS_RETENTION_INTERVAL_SECONDS``.
Several orchestrators on one PostgreSQL may all run it: batches lock their rows with
``SKIP LOCKED`` and deleting is idempotent. A failing round is logged and retried at
the next interval; it never stops the orchestrator. What is kept and what goes is
described in ``polos.storage._retention`` and ``docs/retention-and-backups.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass

from polos.errors import ConfigurationError
from polos.protocol import now_ms
from polos.storage import Store, prune_events, prune_executions

log = logging.getLogger("polos.orchestrator.retention")

DAY_MS = 86_400_000
DEFAULT_BATCH = 500
DEFAULT_INTERVAL_S = 60.0
MAX_BATCH = 100_000
BATCH_PAUSE_S = 0.05
"""Pause between two batches of one round: the batcher's writes go in between."""


@dataclass(frozen=True, slots=True)
class RetentionSettings:
    """How long finished work is kept.

    Attributes:
        executions_ms: finished executions (with their steps and waits) older than this
            are pruned; ``None`` keeps them forever.
        events_ms: events older than this are pruned (unless an open wait or a trigger
            still needs them); ``None`` keeps them forever.
        batch: most rows deleted per transaction.
        interval_s: pause between two rounds.
    """

    executions_ms: int | None = None
    events_ms: int | None = None
    batch: int = DEFAULT_BATCH
    interval_s: float = DEFAULT_INTERVAL_S

    def __post_init__(self) -> None:
        for name in ("executions_ms", "events_ms"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigurationError(f"retention {name} must be positive, got {value}")
        if not 1 <= self.batch <= MAX_BATCH:
            raise ConfigurationError(f"retention batch must be 1..{MAX_BATCH}, got {self.batch}")
        if not (math.isfinite(self.interval_s) and self.interval_s > 0):
            raise ConfigurationError(
                f"retention interval must be a positive number of seconds, got {self.interval_s}"
            )

    @property
    def enabled(self) -> bool:
        """Whether anything is ever pruned."""
        return self.executions_ms is not None or self.events_ms is not None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RetentionSettings | None:
        """Settings from ``POLOS_RETENTION_DAYS``, ``POLOS_EVENT_RETENTION_DAYS`` (default:
        the executions' setting), ``POLOS_RETENTION_BATCH`` (default 500) and
        ``POLOS_RETENTION_INTERVAL_SECONDS`` (default 60); ``None`` when neither
        retention is set. Days may be fractional (``0.5`` is twelve hours).

        Raises:
            ConfigurationError: a value is not a number, or out of range.
        """
        env = os.environ if env is None else env
        executions = days_to_ms(env.get("POLOS_RETENTION_DAYS"), "POLOS_RETENTION_DAYS")
        events = days_to_ms(env.get("POLOS_EVENT_RETENTION_DAYS"), "POLOS_EVENT_RETENTION_DAYS")
        batch = _parse_int(env.get("POLOS_RETENTION_BATCH"), "POLOS_RETENTION_BATCH")
        interval = _parse_float(
            env.get("POLOS_RETENTION_INTERVAL_SECONDS"), "POLOS_RETENTION_INTERVAL_SECONDS"
        )
        if batch is not None and not 1 <= batch <= MAX_BATCH:
            raise ConfigurationError(f"POLOS_RETENTION_BATCH must be 1..{MAX_BATCH}, got {batch}")
        if interval is not None and interval <= 0:
            raise ConfigurationError(
                f"POLOS_RETENTION_INTERVAL_SECONDS must be positive, got {interval:g}"
            )
        if executions is None and events is None:
            return None
        return cls(
            executions_ms=executions,
            events_ms=events if events is not None else executions,
            batch=batch if batch is not None else DEFAULT_BATCH,
            interval_s=interval if interval is not None else DEFAULT_INTERVAL_S,
        )


def days_to_ms(raw: str | float | None, name: str) -> int | None:
    """A positive (possibly fractional) number of days in milliseconds; ``None`` if unset."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    days = raw if isinstance(raw, float | int) else _parse_float(raw, name)
    assert days is not None
    if not (math.isfinite(days) and days > 0):
        raise ConfigurationError(
            f"{name} must be a positive number of days, got {days:g} "
            "(leave it unset to keep data forever)"
        )
    return max(1, round(days * DAY_MS))


def _parse_float(raw: str | None, name: str) -> float | None:
    if raw is None or not raw.strip():
        return None
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be a number, got {raw!r}") from None
    if not math.isfinite(value):
        raise ConfigurationError(f"{name} must be a finite number, got {raw!r}")
    return value


def _parse_int(raw: str | None, name: str) -> int | None:
    if raw is None or not raw.strip():
        return None
    try:
        return int(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be a whole number, got {raw!r}") from None


@dataclass(slots=True)
class RetentionCounts:
    """Rows deleted by one round (or by all rounds so far)."""

    executions: int = 0
    steps: int = 0
    waits: int = 0
    events: int = 0
    batches: int = 0

    @property
    def total(self) -> int:
        """Every row deleted."""
        return self.executions + self.steps + self.waits + self.events

    def add(self, other: RetentionCounts) -> None:
        """Add ``other``'s counts to these."""
        self.executions += other.executions
        self.steps += other.steps
        self.waits += other.waits
        self.events += other.events
        self.batches += other.batches


async def prune_round(
    store: Store,
    settings: RetentionSettings,
    *,
    now: int | None = None,
    pause_s: float = BATCH_PAUSE_S,
) -> RetentionCounts:
    """Prune everything that may go now, in batches of ``settings.batch`` rows.

    Each batch is its own transaction; the round ends when a batch comes back short
    (nothing more to prune now, or the rest is locked by another orchestrator's batch).
    """
    now = now_ms() if now is None else now
    counts = RetentionCounts()
    if settings.executions_ms is not None:
        cutoff = now - settings.executions_ms
        after = 0
        while True:
            done = await prune_executions(store, before=cutoff, limit=settings.batch, after=after)
            counts.add(RetentionCounts(done.executions, done.steps, done.waits, 0, 1))
            after = done.resume_after
            if done.selected < settings.batch:
                break
            await asyncio.sleep(pause_s)
    if settings.events_ms is not None:
        cutoff = now - settings.events_ms
        after = 0
        while True:
            pruned = await prune_events(store, before=cutoff, limit=settings.batch, after=after)
            counts.add(RetentionCounts(events=pruned.events, batches=1))
            after = pruned.resume_after
            if pruned.selected < settings.batch:
                break
            await asyncio.sleep(pause_s)
    return counts


class RetentionLoop:
    """Runs :func:`prune_round` every ``interval_s``; one per orchestrator."""

    def __init__(self, store: Store, settings: RetentionSettings) -> None:
        self._store = store
        self._settings = settings
        self._task: asyncio.Task[None] | None = None
        self.total = RetentionCounts()
        """Everything this loop deleted since it started."""
        self.rounds = 0
        self.failures = 0

    def start(self) -> None:
        """Start the loop (its first round runs at once)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="polos-retention")

    async def stop(self) -> None:
        """Stop the loop (a batch in progress is rolled back)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        s = self._settings
        log.info(
            "retention on: executions %s, events %s, batches of %d every %gs",
            _describe(s.executions_ms),
            _describe(s.events_ms),
            s.batch,
            s.interval_s,
        )
        while True:
            try:
                counts = await prune_round(self._store, s)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database is down, a deadlock, ...: next time
                self.failures += 1
                log.warning("retention round failed (will retry in %gs): %s", s.interval_s, exc)
            else:
                self.rounds += 1
                self.total.add(counts)
                if counts.total:
                    log.info(
                        "retention pruned %d executions, %d steps, %d waits, %d events "
                        "in %d batches",
                        counts.executions,
                        counts.steps,
                        counts.waits,
                        counts.events,
                        counts.batches,
                    )
            await asyncio.sleep(s.interval_s)


def _describe(ms: int | None) -> str:
    if ms is None:
        return "kept forever"
    return f"kept {ms / DAY_MS:g} days"
