"""``polos sessions``: list, show and delete the conversation memory of agent sessions."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import click
from rich.table import Table
from rich.text import Text

from polos.protocol import SessionMemory

from ._common import client_from, console, fmt_time, run_async

ROLE_STYLE = {"user": "cyan", "assistant": "green", "system": "magenta", "tool": "yellow"}


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "), default=str)


def _text(content: Any) -> str:
    """A message's content as text: a string, or the text parts of a list of parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [
            str(p.get("text", "")) if isinstance(p, Mapping) else str(p)
            for p in content
            if not isinstance(p, Mapping) or "text" in p
        ]
        return "\n".join(p for p in parts if p) or _compact(content)
    return _compact(content)


def _tool_call(call: Any) -> str:
    """``→ name(args)``, for Polos's ``{name, arguments}`` and OpenAI's ``{function: ...}``."""
    if not isinstance(call, Mapping):
        return f"→ {_compact(call)}"
    function = call.get("function")
    inner: Mapping[str, Any] = function if isinstance(function, Mapping) else call
    name = inner.get("name", "?")
    args = inner.get("arguments", inner.get("input", {}))
    if isinstance(args, str):  # OpenAI sends the arguments as a JSON string
        try:
            args = json.loads(args)
        except ValueError:
            return f"→ {name}({args})"
    if isinstance(args, Mapping):
        shown = ", ".join(f"{k}={_compact(v)}" for k, v in args.items())
    else:
        shown = _compact(args)
    return f"→ {name}({shown})"


def transcript_lines(message: Mapping[str, Any]) -> tuple[str, str]:
    """A message as (who, what): its role (with the tool's name for a tool result) and its
    text, then one ``→ name(args)`` line per tool call."""
    role = str(message.get("role", "?"))
    who = role
    if role == "tool" and message.get("name"):
        who = f"tool {message['name']}"
    lines = [_text(message.get("content"))] if message.get("content") not in (None, "") else []
    lines += [_tool_call(c) for c in message.get("tool_calls") or []]
    return who, "\n".join(lines)


def _show(memory: SessionMemory, last: int) -> None:
    head = Table(box=None, show_header=False)
    head.add_column(style="bold")
    head.add_column(overflow="fold")
    head.add_row("session", Text(memory.id))
    head.add_row("version", str(memory.version))
    head.add_row("messages", str(len(memory.messages)))
    head.add_row("created", fmt_time(memory.created_at))
    head.add_row("updated", fmt_time(memory.updated_at))
    head.add_row("summary", Text(memory.summary) if memory.summary else Text("-", style="dim"))
    console.print(head, highlight=False)
    if memory.version == 0:
        console.print("\nnothing stored for this session", style="dim", highlight=False)
        return
    shown = memory.messages[-last:] if last else memory.messages
    if len(shown) < len(memory.messages):
        console.print(
            f"\n... {len(memory.messages) - len(shown)} earlier messages not shown",
            style="dim",
            highlight=False,
        )
    console.print()
    table = Table(box=None, show_header=False)
    table.add_column(no_wrap=True)
    table.add_column(overflow="fold")
    for message in shown:
        who, what = transcript_lines(message)
        style = ROLE_STYLE.get(str(message.get("role")), "white")
        table.add_row(Text(f"{who}:", style=f"bold {style}"), Text(what))
    console.print(table, highlight=False)


@click.group()
def sessions() -> None:
    """Agent session memory: list sessions, show a transcript, delete one."""


@sessions.command("list")
@click.option(
    "--limit",
    "-n",
    default=50,
    show_default=True,
    type=click.IntRange(1, 500),
    help="Most rows to print (a page; see --cursor).",
)
@click.option("--cursor", help="Cursor printed at the end of the previous page.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
@run_async
async def list_sessions(ctx: click.Context, limit: int, cursor: str | None, as_json: bool) -> None:
    """List sessions, most recently saved first."""
    async with client_from(ctx) as client:
        page = await client.sessions.list(limit=limit, cursor=cursor)
    if as_json:
        console.print_json(page.model_dump_json())
        return
    if not page.items:
        console.print("no sessions", style="dim", highlight=False)
        return
    table = Table(box=None, header_style="bold")
    table.add_column("SESSION", overflow="fold")
    for column in ("VERSION", "MESSAGES", "SUMMARY", "UPDATED"):
        table.add_column(column, no_wrap=True)
    for s in page.items:
        table.add_row(
            Text(s.id),
            str(s.version),
            str(s.message_count),
            "yes" if s.has_summary else "-",
            fmt_time(s.updated_at),
        )
    console.print(table, highlight=False)
    if page.next_cursor:
        console.print(
            f"more: polos sessions list --cursor {page.next_cursor}",
            style="dim",
            highlight=False,
            markup=False,
        )


@sessions.command("show")
@click.argument("session_id")
@click.option(
    "--last", "-n", default=0, type=click.IntRange(0), help="Only the last N messages (0: all)."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
@run_async
async def show(ctx: click.Context, session_id: str, last: int, as_json: bool) -> None:
    """Show a session's summary and its messages as a transcript."""
    async with client_from(ctx) as client:
        memory = await client.sessions.get(session_id)
    if as_json:
        console.print_json(memory.model_dump_json())
        return
    _show(memory, last)


@sessions.command("delete")
@click.argument("session_id")
@click.pass_context
@run_async
async def delete(ctx: click.Context, session_id: str) -> None:
    """Delete a session's memory (its next run starts a new conversation)."""
    async with client_from(ctx) as client:
        await client.sessions.delete(session_id)
    console.print(f"deleted session {session_id}", highlight=False, markup=False)
