"""Cron slots in a time zone: validation, the next slot, and what a due schedule runs.

Pure functions (no clock, no I/O): every "now" is passed in, so tests can use any
date. Times are UTC epoch milliseconds, like everywhere else in Polos.

A cron expression is evaluated in the schedule's *wall-clock* time (croniter on
naive local datetimes), and each wall time is then placed on the time line:

* a wall time that happens twice (the autumn "fall back" hour) runs once, at its
  first occurrence (``fold=0``);
* a wall time that does not exist (the spring "spring forward" gap) runs once, at
  the first instant after the gap (02:30 in a 02:00→03:00 gap runs at 03:00);
  several slots in one gap collapse into that one run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, CroniterError, croniter

CATCHUP_POLICIES = ("once", "skip", "all")
"""What a schedule does with slots missed while no orchestrator was running."""

OVERLAP_POLICIES = ("skip", "queue", "allow")
"""What a slot does while the schedule's previous execution has not finished."""

MAX_CATCHUP = 100
"""``catchup="all"`` runs at most this many missed slots (the most recent ones)."""

ON_TIME_MS = 60_000
"""A slot fired at most this late counts as on time; later ones were *missed*."""

_ALIASES = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
_FIELD = re.compile(r"^[0-9A-Za-z*/,?#-]+$")


@dataclass(frozen=True, slots=True)
class SlotPlan:
    """What one due schedule does now.

    Attributes:
        slots: slot instants to start an execution for, oldest first (epoch ms).
        missed: due slots that are not run (catch-up policy), for logs.
        next_at: the first slot after ``now``: where the schedule goes on.
    """

    slots: list[int]
    missed: int
    next_at: int | None


def validate_cron(expression: str) -> str:
    """The expression with its whitespace normalised.

    Five fields (minute hour day-of-month month day-of-week, with ``*``, ``,``,
    ``-``, ``/``, names such as ``MON`` or ``JAN``, ``L`` and ``#``), or one of
    ``@hourly``, ``@daily``, ``@midnight``, ``@weekly``, ``@monthly``, ``@yearly``.

    Raises:
        ValueError: saying what is wrong.
    """
    text = " ".join(expression.split())
    if not text:
        raise ValueError("cron is empty: give five fields such as '0 9 * * 1-5'")
    if text.startswith("@"):
        if text.lower() not in _ALIASES:
            raise ValueError(
                f"unknown cron alias {text!r}: use one of {', '.join(sorted(_ALIASES))}"
            )
        text = text.lower()
    else:
        fields = text.split(" ")
        if len(fields) != 5:
            raise ValueError(
                f"cron {text!r} has {len(fields)} field(s); it needs exactly 5: "
                "minute hour day-of-month month day-of-week (e.g. '0 9 * * 1-5')"
            )
        bad = [f for f in fields if not _FIELD.match(f)]
        if bad:
            raise ValueError(f"cron {text!r} has an invalid field {bad[0]!r}")
    try:
        _check_fires(text)
    except CroniterBadDateError:
        raise ValueError(f"cron {text!r} never fires (no such date)") from None
    except (CroniterError, ValueError, KeyError, IndexError) as exc:
        detail = str(exc).strip() or type(exc).__name__
        raise ValueError(f"cron {text!r} is invalid: {detail}") from None
    return text


@lru_cache(maxsize=1024)
def _check_fires(text: str) -> None:
    croniter(text, datetime(2000, 1, 1)).get_next(datetime)


def validate_timezone(name: str) -> str:
    """The IANA time zone name, checked (``UTC``, ``Europe/Berlin``, ``America/New_York``).

    Raises:
        ValueError: the zone is unknown.
    """
    if not name or len(name) > 100:
        raise ValueError("timezone must be an IANA name such as 'UTC' or 'Europe/Berlin'")
    try:
        zone(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(
            f"unknown timezone {name!r}: use an IANA name such as 'UTC' or 'Europe/Berlin'"
        ) from None
    return name


@lru_cache(maxsize=256)
def zone(name: str) -> ZoneInfo:
    """The :class:`~zoneinfo.ZoneInfo` of ``name`` (cached)."""
    return ZoneInfo(name)


def slot_datetime(ms: int, timezone: str) -> datetime:
    """An epoch-ms instant as an aware datetime in ``timezone``."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).astimezone(zone(timezone))


def _ms(moment: datetime) -> int:
    return round(moment.timestamp() * 1000)


def _gap_end(wall: datetime, tz: ZoneInfo) -> int:
    """The instant a wall-clock gap ends (the clock jumps to it), for a ``wall`` inside it."""
    low = int(wall.replace(tzinfo=tz, fold=1).timestamp())  # before the gap: old offset
    high = int(wall.replace(tzinfo=tz, fold=0).timestamp())  # after it: new offset
    after = datetime.fromtimestamp(high, tz=tz).utcoffset()
    while low + 1 < high:
        mid = (low + high) // 2
        if datetime.fromtimestamp(mid, tz=tz).utcoffset() == after:
            high = mid
        else:
            low = mid
    return high * 1000


def wall_to_ms(wall: datetime, tz: ZoneInfo) -> int:
    """Place a naive wall-clock time of ``tz`` on the time line (see the module docstring)."""
    first = wall.replace(tzinfo=tz, fold=0)
    instant = first.astimezone(UTC)
    if instant.astimezone(tz).replace(tzinfo=None) != wall:
        return _gap_end(wall, tz)  # the wall time does not exist
    return _ms(instant)


def _wall(ms: int, tz: ZoneInfo) -> datetime:
    local = datetime.fromtimestamp(ms // 1000, tz=tz)
    return local.replace(tzinfo=None)


def next_slot(cron: str, timezone: str, after_ms: int) -> int | None:
    """The first slot strictly after ``after_ms`` (None: the cron never fires again)."""
    tz = zone(timezone)
    it = croniter(cron, _wall(after_ms, tz))
    try:
        for _ in range(100_000):
            slot = wall_to_ms(it.get_next(datetime), tz)
            if slot > after_ms:  # a second pass through a fall-back hour maps behind us
                return slot
    except CroniterBadDateError:
        return None
    return None  # pragma: no cover - a slot is always found far sooner


def slots_between(
    cron: str, timezone: str, since_ms: int, now_ms: int, limit: int
) -> tuple[list[int], bool]:
    """The latest ``limit`` slots in ``[since_ms, now_ms]``, oldest first.

    Returns the slots and whether older slots in the range were left out.
    """
    tz = zone(timezone)
    local = datetime.fromtimestamp(now_ms // 1000, tz=tz)
    start = local.replace(tzinfo=None)
    if local.fold:  # in the repeated hour: first-occurrence slots up to its end are past too
        start += (local.replace(fold=0).utcoffset() or timedelta()) - (
            local.utcoffset() or timedelta()
        )
    it = croniter(cron, start + timedelta(seconds=1))
    found: list[int] = []
    try:
        while True:
            slot = wall_to_ms(it.get_prev(datetime), tz)
            if slot < since_ms:
                return found[::-1], False
            if slot > now_ms or (found and found[-1] == slot):
                continue
            if len(found) == limit:
                return found[::-1], True
            found.append(slot)
    except CroniterBadDateError:
        return found[::-1], False


def plan_slots(
    cron: str,
    timezone: str,
    next_at: int,
    now_ms: int,
    catchup: str,
    *,
    on_time_ms: int = ON_TIME_MS,
    max_catchup: int = MAX_CATCHUP,
) -> SlotPlan:
    """What a schedule whose ``next_at`` is due does at ``now_ms``.

    * ``once``: run the latest due slot (however late), skip the older ones;
    * ``skip``: run the latest due slot only if it is on time (at most
      :data:`ON_TIME_MS` late), skip everything missed;
    * ``all``: run every due slot, oldest first, at most :data:`MAX_CATCHUP`
      (the most recent ones).
    """
    following = next_slot(cron, timezone, now_ms)
    limit = max_catchup if catchup == "all" else 1
    due, more = slots_between(cron, timezone, next_at, now_ms, limit)
    if not due:
        return SlotPlan([], 0, following)
    if catchup == "all":
        return SlotPlan(due, 1 if more else 0, following)
    latest = due[-1]
    older = 1 if more else 0  # at least one; counting them all could take long
    if catchup == "skip" and now_ms - latest > on_time_ms:
        return SlotPlan([], older + 1, following)
    return SlotPlan([latest], older, following)
