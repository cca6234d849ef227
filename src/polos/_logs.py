"""Structured logs: every line says which execution, step and worker it is about.

The worker binds the ids of the execution it runs (:func:`bind`) for the lifetime of
that attempt's task, and the SDK binds the step key around each step function, so any
record logged meanwhile, by Polos or by user code with any logger, carries them. The
ids live in a :class:`contextvars.ContextVar`: asyncio tasks and ``asyncio.to_thread``
copy it, so concurrent executions never see each other's ids.

:func:`setup_logging` (called by ``polos-server start``, ``polos worker`` and
``Worker.run()`` when nothing configured logging) picks the format from
``POLOS_LOG_FORMAT`` (``text``, the default, or ``json``: one object per line) and
the level from ``POLOS_LOG_LEVEL``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import traceback
from collections.abc import Iterator, Mapping
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from types import MappingProxyType
from typing import IO, Any

from polos._redact import redact_text
from polos.errors import ConfigurationError

ID_FIELDS = ("execution_id", "step_key", "workflow_id", "worker_id", "attempt")
"""The ids a log record may carry, in the order they are written."""

FORMAT_ENV = "POLOS_LOG_FORMAT"
"""Environment variable choosing the format: ``text`` (default) or ``json``."""

LEVEL_ENV = "POLOS_LOG_LEVEL"
"""Environment variable choosing the level (``debug``, ``info``, ``warning``, ``error``)."""

# One variable holding an immutable mapping (rather than one variable per id): binding
# several ids is one set/reset, and a nested bind (a step inside an execution) restores
# the outer ids exactly when it is reset.
_NONE: Mapping[str, Any] = MappingProxyType({})
_ids: ContextVar[Mapping[str, Any]] = ContextVar("polos_log_ids", default=_NONE)

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}


def bind(**ids: Any) -> Token[Mapping[str, Any]]:
    """Add ids (``execution_id=...``, ``step_key=...``) to the current context.

    ``None`` values are ignored. Returns a token for :func:`unbind`, which restores
    the ids as they were.
    """
    merged = {**_ids.get(), **{k: v for k, v in ids.items() if v is not None}}
    return _ids.set(merged)


def unbind(token: Token[Mapping[str, Any]]) -> None:
    """Restore the ids as they were before the :func:`bind` that returned ``token``."""
    _ids.reset(token)


@contextlib.contextmanager
def log_context(**ids: Any) -> Iterator[None]:
    """``with log_context(execution_id=...):`` binds ids for the block."""
    token = bind(**ids)
    try:
        yield
    finally:
        unbind(token)


def current_ids() -> dict[str, Any]:
    """The ids bound in the current context."""
    return dict(_ids.get())


def _record_ids(record: logging.LogRecord) -> dict[str, Any]:
    """The ids of a record: those given with ``extra=`` win over the bound ones."""
    bound = _ids.get()
    out: dict[str, Any] = {}
    for name in ID_FIELDS:
        value = getattr(record, name, None)
        if value is None:
            value = bound.get(name)
        if value is not None:
            out[name] = value
    return out


class ContextFilter(logging.Filter):
    """Copies the bound ids onto each record (as attributes), for any formatter to use.

    Installed on the handler, so records of every logger that reaches it (user
    code's too) get the ids; a record's own ``extra=`` ids are kept.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Annotate ``record``; never drops it."""
        for name, value in _record_ids(record).items():
            setattr(record, name, value)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``message``, the ids,
    other ``extra=`` fields, and ``exc_info`` (the formatted traceback) when present."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact_text(record.getMessage()),
        }
        out.update(_record_ids(record))
        for name, value in record.__dict__.items():
            if name not in _STANDARD and name not in out and not name.startswith("_"):
                out[name] = value
        if record.exc_info:
            out["exc_info"] = redact_text(
                "".join(traceback.format_exception(*record.exc_info)).rstrip()
            )
        elif record.exc_text:
            out["exc_info"] = redact_text(record.exc_text)
        if record.stack_info:
            out["stack_info"] = record.stack_info
        # default=str: an ``extra=`` value that JSON cannot hold must not lose the line.
        return json.dumps(out, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message`` followed by the known ids as ``key=value``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        """The line (and traceback), with credential-looking values redacted."""
        return redact_text(super().format(record))

    def formatMessage(self, record: logging.LogRecord) -> str:
        """The message line with the ids appended (before any traceback)."""
        line = super().formatMessage(record)
        ids = _record_ids(record)
        if not ids:
            return line
        return line + " [" + " ".join(f"{k}={v}" for k, v in ids.items()) + "]"


def _level(value: str | int | None) -> int:
    if value is None or value == "":
        value = os.environ.get(LEVEL_ENV) or "info"
    if isinstance(value, int):
        return value
    level = logging.getLevelName(value.strip().upper())
    if not isinstance(level, int):
        raise ConfigurationError(
            f"unknown log level {value!r}: use debug, info, warning or error ({LEVEL_ENV})"
        )
    return level


def make_formatter(fmt: str | None = None) -> logging.Formatter:
    """The formatter for ``fmt`` (``json`` or ``text``; default: ``POLOS_LOG_FORMAT``)."""
    name = (fmt or os.environ.get(FORMAT_ENV) or "text").strip().lower()
    if name == "json":
        return JsonFormatter()
    if name == "text":
        return TextFormatter()
    raise ConfigurationError(f"unknown log format {name!r}: use text or json ({FORMAT_ENV})")


def setup_logging(
    level: str | int | None = None, fmt: str | None = None, stream: IO[str] | None = None
) -> logging.Handler:
    """Send log records to ``stream`` (stderr) in the chosen format; returns the handler.

    ``level`` and ``fmt`` default to ``POLOS_LOG_LEVEL`` (else ``info``) and
    ``POLOS_LOG_FORMAT`` (else ``text``). Calling it again replaces the handler it
    installed before; handlers installed by others are left alone.

    Raises:
        ConfigurationError: an unknown level or format.
    """
    chosen_level = _level(level)  # both checked before anything changes
    formatter = make_formatter(fmt)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter)
    handler.addFilter(ContextFilter())
    handler.set_name("polos")
    root = logging.getLogger()
    for old in list(root.handlers):
        if old.get_name() == "polos":
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(chosen_level)
    return handler


__all__ = [
    "FORMAT_ENV",
    "ID_FIELDS",
    "LEVEL_ENV",
    "ContextFilter",
    "JsonFormatter",
    "TextFormatter",
    "bind",
    "current_ids",
    "log_context",
    "make_formatter",
    "setup_logging",
    "unbind",
]
