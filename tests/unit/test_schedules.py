"""Cron slots with a fake clock: validation, DST in Europe/Berlin, catch-up and the payload."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from polos import ConfigurationError, SchedulePayload, WorkflowContext, workflow
from polos.protocol import (
    MAX_CATCHUP,
    ON_TIME_MS,
    CreateScheduleRequest,
    UpdateScheduleRequest,
    next_slot,
    plan_slots,
    slot_datetime,
    slots_between,
    validate_cron,
    validate_timezone,
)

BERLIN = "Europe/Berlin"


def ms(*parts: int) -> int:
    """Epoch ms of a UTC date."""
    return int(datetime(*parts, tzinfo=UTC).timestamp() * 1000)  # type: ignore[misc]


def local(value: int | None, tz: str = BERLIN) -> str:
    """An instant as ISO text in ``tz``."""
    assert value is not None
    return slot_datetime(value, tz).isoformat()


def following(cron: str, tz: str, start: int, n: int) -> list[str]:
    """The next ``n`` slots after ``start``, as ISO text in ``tz``."""
    out = []
    for _ in range(n):
        nxt = next_slot(cron, tz, start)
        assert nxt is not None
        out.append(local(nxt, tz))
        start = nxt
    return out


# ---------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("cron", "normal"),
    [
        ("0 9 * * 1-5", "0 9 * * 1-5"),
        ("  0   9 * *   MON-FRI ", "0 9 * * MON-FRI"),
        ("*/15 * * * *", "*/15 * * * *"),
        ("@daily", "@daily"),
        ("@Hourly", "@hourly"),
        ("0 0 L * *", "0 0 L * *"),
    ],
)
def test_validate_cron__accepts_five_fields_and_aliases(cron: str, normal: str) -> None:
    assert validate_cron(cron) == normal


@pytest.mark.parametrize(
    ("cron", "needle"),
    [
        ("", "empty"),
        ("* * * *", "has 4 field(s); it needs exactly 5"),
        ("* * * * * *", "has 6 field(s)"),
        ("61 * * * *", "out of range"),
        ("0 0 30 2 *", "never fires"),
        ("@every 5m", "unknown cron alias"),
        ("a b c d e", "invalid"),
        ("0 9 * * 1;rm", "invalid field"),
    ],
)
def test_validate_cron__names_the_problem(cron: str, needle: str) -> None:
    with pytest.raises(ValueError, match=None) as info:
        validate_cron(cron)
    assert needle in str(info.value)


def test_validate_timezone() -> None:
    assert validate_timezone("Europe/Berlin") == "Europe/Berlin"
    assert validate_timezone("UTC") == "UTC"
    for bad in ("Mars/Olympus", "../../etc/passwd", "", "x" * 101):
        with pytest.raises(ValueError, match="timezone"):
            validate_timezone(bad)


def test_request_models__reject_bad_cron_timezone_and_empty_update() -> None:
    with pytest.raises(ValueError, match="exactly 5"):
        CreateScheduleRequest(workflow_id="w", cron="* * *")
    with pytest.raises(ValueError, match="unknown timezone"):
        CreateScheduleRequest(workflow_id="w", cron="* * * * *", timezone="Nowhere/City")
    with pytest.raises(ValueError, match="nothing to change"):
        UpdateScheduleRequest()
    assert UpdateScheduleRequest(payload=None).model_fields_set == {"payload"}


# ---------------------------------------------------------------------- next slot


def test_next_slot__weekdays_in_utc() -> None:
    friday_noon = ms(2026, 1, 2, 12)  # a Friday
    assert following("0 9 * * 1-5", "UTC", friday_noon, 2) == [
        "2026-01-05T09:00:00+00:00",
        "2026-01-06T09:00:00+00:00",
    ]


def test_next_slot__is_strictly_after() -> None:
    slot = ms(2026, 1, 1, 9)
    assert next_slot("0 9 * * *", "UTC", slot - 1) == slot
    assert next_slot("0 9 * * *", "UTC", slot) == ms(2026, 1, 2, 9)


def test_next_slot__keeps_wall_clock_time_across_dst() -> None:
    # 09:00 in Berlin is 08:00 UTC in winter and 07:00 UTC in summer.
    slots = [next_slot("0 9 * * *", BERLIN, ms(2026, 3, d, 12)) for d in (27, 28, 29)]
    assert [local(s) for s in slots] == [
        "2026-03-28T09:00:00+01:00",
        "2026-03-29T09:00:00+02:00",
        "2026-03-30T09:00:00+02:00",
    ]
    assert slots[1] == ms(2026, 3, 29, 7)


def test_dst_spring_forward__a_missing_wall_time_runs_once_when_the_gap_ends() -> None:
    # 2026-03-29: Berlin clocks jump from 02:00 CET to 03:00 CEST (01:00 UTC).
    assert following("30 2 * * *", BERLIN, ms(2026, 3, 28, 12), 3) == [
        "2026-03-29T03:00:00+02:00",
        "2026-03-30T02:30:00+02:00",
        "2026-03-31T02:30:00+02:00",
    ]
    assert next_slot("30 2 * * *", BERLIN, ms(2026, 3, 28, 12)) == ms(2026, 3, 29, 1)


def test_dst_spring_forward__slots_inside_the_gap_collapse_into_one_run() -> None:
    # 02:00, 02:15, 02:30, 02:45 do not exist; they and the real 03:00 are one run.
    assert following("*/15 * * * *", BERLIN, ms(2026, 3, 29, 0, 30), 4) == [
        "2026-03-29T01:45:00+01:00",
        "2026-03-29T03:00:00+02:00",
        "2026-03-29T03:15:00+02:00",
        "2026-03-29T03:30:00+02:00",
    ]


def test_dst_fall_back__a_repeated_wall_time_runs_once() -> None:
    # 2026-10-25: Berlin clocks go back from 03:00 CEST to 02:00 CET (01:00 UTC).
    assert following("30 2 * * *", BERLIN, ms(2026, 10, 24, 12), 2) == [
        "2026-10-25T02:30:00+02:00",
        "2026-10-26T02:30:00+01:00",
    ]
    assert following("30 * * * *", BERLIN, ms(2026, 10, 24, 23, 45), 3) == [
        "2026-10-25T02:30:00+02:00",
        "2026-10-25T03:30:00+01:00",
        "2026-10-25T04:30:00+01:00",
    ]


def test_dst_fall_back__from_inside_the_repeated_hour() -> None:
    # Now is 02:40 CET, the second pass: 02:45 CEST (00:45 UTC) is behind us, not next.
    now = ms(2026, 10, 25, 1, 40)
    assert local(next_slot("45 * * * *", BERLIN, now)) == "2026-10-25T03:45:00+01:00"
    due, more = slots_between("45 * * * *", BERLIN, ms(2026, 10, 24, 23), now, 10)
    assert [local(s) for s in due] == [
        "2026-10-25T01:45:00+02:00",
        "2026-10-25T02:45:00+02:00",
    ]
    assert not more


# ---------------------------------------------------------------------- catch-up


def test_plan__on_time_slot_runs_under_every_policy() -> None:
    slot = ms(2026, 1, 1, 9)
    for policy in ("once", "skip", "all"):
        plan = plan_slots("0 9 * * *", "UTC", slot, slot + 30, policy)
        assert plan.slots == [slot]
        assert plan.missed == 0
        assert plan.next_at == ms(2026, 1, 2, 9)


def test_plan__once_runs_the_latest_missed_slot_not_a_burst() -> None:
    down_since = ms(2026, 1, 1, 0)
    now = ms(2026, 1, 3, 5, 30)  # 53 hourly slots missed
    plan = plan_slots("0 * * * *", "UTC", down_since, now, "once")
    assert plan.slots == [ms(2026, 1, 3, 5)]
    assert plan.missed >= 1
    assert plan.next_at == ms(2026, 1, 3, 6)


def test_plan__skip_runs_nothing_that_was_missed() -> None:
    now = ms(2026, 1, 3, 5, 30)
    plan = plan_slots("0 * * * *", "UTC", ms(2026, 1, 1), now, "skip")
    assert plan.slots == []
    assert plan.next_at == ms(2026, 1, 3, 6)
    # ... but a slot that is merely a little late still runs.
    late = ms(2026, 1, 3, 5) + ON_TIME_MS - 1
    assert plan_slots("0 * * * *", "UTC", ms(2026, 1, 3, 5), late, "skip").slots == [
        ms(2026, 1, 3, 5)
    ]


def test_plan__all_runs_every_missed_slot_in_order() -> None:
    plan = plan_slots("0 * * * *", "UTC", ms(2026, 1, 1, 0), ms(2026, 1, 1, 5, 10), "all")
    assert plan.slots == [ms(2026, 1, 1, h) for h in range(6)]
    assert plan.missed == 0
    assert plan.next_at == ms(2026, 1, 1, 6)


def test_plan__all_is_capped_to_the_most_recent_slots() -> None:
    now = ms(2026, 1, 1) + 1000 * 60_000  # 1,000 minutely slots missed
    plan = plan_slots("* * * * *", "UTC", ms(2026, 1, 1), now, "all")
    assert len(plan.slots) == MAX_CATCHUP
    assert plan.slots[-1] == now
    assert plan.slots == sorted(plan.slots)
    assert plan.slots[0] == now - (MAX_CATCHUP - 1) * 60_000
    assert plan.missed >= 1


def test_plan__a_year_of_downtime_is_cheap() -> None:
    started = datetime.now(UTC)
    plan = plan_slots("* * * * *", "UTC", ms(2025, 1, 1), ms(2026, 1, 1), "once")
    assert plan.slots == [ms(2026, 1, 1)]
    assert datetime.now(UTC) - started < timedelta(seconds=1)


def test_plan__catch_up_across_spring_forward() -> None:
    # Down from 00:00 to 04:00 UTC on 2026-03-29 with an every-30-minutes cron:
    # 02:00 and 02:30 do not exist and are one run with 03:00 CEST.
    plan = plan_slots("*/30 * * * *", BERLIN, ms(2026, 3, 28, 23), ms(2026, 3, 29, 2, 10), "all")
    assert [local(s) for s in plan.slots] == [
        "2026-03-29T00:00:00+01:00",
        "2026-03-29T00:30:00+01:00",
        "2026-03-29T01:00:00+01:00",
        "2026-03-29T01:30:00+01:00",
        "2026-03-29T03:00:00+02:00",
        "2026-03-29T03:30:00+02:00",
        "2026-03-29T04:00:00+02:00",
    ]


# ---------------------------------------------------------------------- payload and decorator


def test_schedule_payload__carries_its_zone() -> None:
    payload = SchedulePayload.model_validate_json(
        '{"timestamp": "2026-10-25T02:30:00+02:00", "timezone": "Europe/Berlin", '
        '"schedule_id": "s", "upcoming": "2026-10-26T02:30:00+01:00"}'
    )
    assert payload.timestamp.utcoffset() == timedelta(hours=2)
    assert payload.timestamp == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)
    assert payload.upcoming is not None
    assert payload.upcoming.timestamp() - payload.timestamp.timestamp() == 25 * 3600
    assert payload.upcoming.utcoffset() == timedelta(hours=1)
    assert (payload.key, payload.data, payload.manual, payload.last_timestamp) == (
        "global",
        None,
        False,
        None,
    )


def test_workflow_decorator__normalises_schedules() -> None:
    @workflow(schedule="0 9 * * 1-5")
    async def simple(ctx: WorkflowContext, payload: SchedulePayload) -> None: ...

    @workflow(schedule={"cron": "0 9 * * *", "timezone": BERLIN, "key": "u1", "overlap": "queue"})
    async def detailed(ctx: WorkflowContext, payload: SchedulePayload) -> None: ...

    @workflow(schedule=True)
    async def api_only(ctx: WorkflowContext, payload: SchedulePayload) -> None: ...

    assert simple.options["schedule"] == {
        "cron": "0 9 * * 1-5",
        "timezone": "UTC",
        "key": "global",
        "catchup": "once",
        "overlap": "skip",
    }
    assert detailed.options["schedule"]["timezone"] == BERLIN
    assert detailed.options["schedule"]["overlap"] == "queue"
    assert api_only.options["schedule"] is True
    assert simple.spec().options["schedule"]["cron"] == "0 9 * * 1-5"


@pytest.mark.parametrize(
    ("schedule", "needle"),
    [
        ("0 9 * *", "exactly 5"),
        ({"cron": "0 9 * * *", "timezone": "Mars/Base"}, "unknown timezone"),
        ({"cron": "0 9 * * *", "every": 5}, "every"),
        ({"timezone": "UTC"}, "cron"),
        ({"cron": "0 9 * * *", "catchup": "burst"}, "catchup"),
        (42, "schedule must be"),
    ],
)
def test_workflow_decorator__rejects_bad_schedules(schedule: Any, needle: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        workflow(schedule=schedule)
    assert needle in str(info.value)
    assert "Value error" not in str(info.value)  # pydantic's prefix says nothing to a user


def test_workflow_decorator__scheduled_and_event_triggered_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="both scheduled"):
        workflow(schedule="0 9 * * *", trigger_on_event="orders/new")
    with pytest.raises(ConfigurationError, match="both scheduled"):
        workflow(schedule=True, trigger_on_event="orders/new")
    workflow(schedule=False, trigger_on_event="orders/new")  # not scheduled: fine


def test_workflow__parses_the_schedule_payload() -> None:
    @workflow(schedule=True)
    async def typed(ctx: WorkflowContext, payload: SchedulePayload) -> None: ...

    @workflow(schedule=True)
    async def plain(ctx: WorkflowContext, payload: dict[str, Any]) -> None: ...

    raw = {
        "timestamp": "2026-03-29T03:00:00+02:00",
        "last_timestamp": "2026-03-28T02:30:00+01:00",
        "timezone": BERLIN,
        "schedule_id": "s1",
        "key": "user-7",
        "upcoming": "2026-03-30T02:30:00+02:00",
        "data": {"plan": "pro"},
    }
    parsed = typed.parse_payload(raw)
    assert isinstance(parsed, SchedulePayload)
    assert parsed.timestamp == datetime(2026, 3, 29, 1, tzinfo=UTC)
    assert parsed.last_timestamp is not None
    assert parsed.timestamp.timestamp() - parsed.last_timestamp.timestamp() == 23.5 * 3600
    assert (parsed.key, parsed.data) == ("user-7", {"plan": "pro"})
    assert plain.parse_payload(raw) == raw
