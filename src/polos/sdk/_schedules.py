"""``@workflow(schedule=...)``: checking and normalising a declared cron schedule."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pydantic

from polos.errors import ConfigurationError
from polos.protocol import ScheduleSpec, describe_problems


def schedule_option(
    value: str | bool | Mapping[str, Any] | None, trigger_on_event: str | None
) -> dict[str, Any] | bool | None:
    """The ``schedule`` option as the orchestrator stores it.

    ``"0 9 * * 1-5"`` (UTC, key ``global``) or ``{"cron": ..., "timezone": ...,
    "key": ..., "catchup": ..., "overlap": ...}`` declare a schedule; ``True`` only
    says the workflow may be scheduled through the API; ``False``/``None``: not
    scheduled.

    Raises:
        ConfigurationError: an invalid cron, timezone, key or policy, or a workflow
            that is also ``trigger_on_event`` (its payload is either an event or a
            schedule slot, not both).
    """
    if value is None or value is False:
        return None
    if trigger_on_event is not None:
        raise ConfigurationError(
            f"a workflow cannot be both scheduled (schedule={value!r}) and event-triggered "
            f"(trigger_on_event={trigger_on_event!r}): make two workflows"
        )
    if value is True:
        return True
    if isinstance(value, str):
        raw: dict[str, Any] = {"cron": value}
    elif isinstance(value, Mapping):
        raw = dict(value)
    else:
        raise ConfigurationError(
            "schedule must be a cron string, a dict with 'cron' (and 'timezone', 'key', "
            f"'catchup', 'overlap') or True, not {type(value).__name__}"
        )
    try:
        spec = ScheduleSpec.model_validate(raw)
    except pydantic.ValidationError as exc:
        problems = describe_problems(exc.errors())
        raise ConfigurationError(f"invalid schedule {value!r}: {problems}") from None
    return spec.model_dump(mode="json")
