"""Shared CLI helpers: one-line errors without tracebacks, JSON parsing, tables."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from functools import wraps
from typing import Any, TypeVar

import click
from rich.console import Console

from polos.client import PolosClient
from polos.errors import PolosError

console = Console()
err_console = Console(stderr=True)


def follow_terminal_width() -> None:
    """Apply ``COLUMNS`` as it is now: the consoles above read it once, at import, and a
    command run in process (tests, ``CliRunner``) may set it later."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        console.width = err_console.width = int(columns)


F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, code: int = 1) -> None:
    """Print one clear error line and exit non-zero."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, markup=True)
    sys.exit(code)


def run_async(fn: Callable[..., Coroutine[Any, Any, Any]]) -> Callable[..., Any]:
    """Run an async click command, turning Polos errors into one-line messages."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return asyncio.run(fn(*args, **kwargs))
        except PolosError as exc:
            fail(str(exc))
        except KeyboardInterrupt:
            fail("interrupted", 130)
        return None

    return wrapper


def parse_json(value: str | None, what: str) -> Any:
    """Parse a JSON option, with a clear error."""
    if value is None:
        return None
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(
            f"{what} is not valid JSON: {exc.msg} (at character {exc.pos})"
        ) from None


def fmt_time(ms: int | None) -> str:
    """Epoch ms as a readable UTC time."""
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def fmt_duration(start: int | None, end: int | None) -> str:
    """Duration between two epoch-ms times."""
    if start is None or end is None:
        return "-"
    ms = end - start
    return f"{ms} ms" if ms < 10_000 else f"{ms / 1000:.1f} s"


STATUS_STYLE = {
    "queued": "yellow",
    "running": "cyan",
    "waiting": "magenta",
    "completed": "green",
    "failed": "red",
    "cancelled": "dim",
}


def styled_status(status: str) -> str:
    """A status with its colour."""
    return f"[{STATUS_STYLE.get(status, 'white')}]{status}[/]"


def client_from(ctx: click.Context) -> PolosClient:
    """A client built from the CLI's global options (URL, key, project, retry budget)."""
    obj: dict[str, Any] = ctx.obj
    return PolosClient(
        obj["api_url"], obj["api_key"], obj["project_id"], retry_for=obj["retry_for"]
    )
