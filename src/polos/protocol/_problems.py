"""Validation errors as one readable line (API 422 bodies, client and gateway errors)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

_PREFIXES = ("Value error, ", "Assertion failed, ")


def problem_message(error: Mapping[str, Any]) -> str:
    """One pydantic error's message, without pydantic's ``Value error,`` prefix."""
    message = str(error.get("msg", "invalid"))
    for prefix in _PREFIXES:
        if message.startswith(prefix):
            return message[len(prefix) :]
    return message


def describe_problems(errors: Iterable[Mapping[str, Any]], limit: int = 5) -> str:
    """``field.path: message; ...`` for the first ``limit`` errors of a pydantic error list."""
    parts = []
    for error in list(errors)[:limit]:
        where = ".".join(str(p) for p in error.get("loc", ()))
        parts.append(f"{where or '(value)'}: {problem_message(error)}")
    return "; ".join(parts)
