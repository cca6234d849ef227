"""``polos schedules``: list, show, create, update, pause, resume, delete and trigger."""

from __future__ import annotations

import json
from typing import Any

import click
from rich.table import Table
from rich.text import Text

from polos.protocol import CatchupPolicy, OverlapPolicy, Schedule, slot_datetime

from ._common import client_from, console, fmt_time, parse_json, run_async

CATCHUP = click.Choice([p.value for p in CatchupPolicy])
OVERLAP = click.Choice([p.value for p in OverlapPolicy])


def _local(ms: int | None, timezone: str) -> str:
    """An epoch-ms time in the schedule's zone (with its UTC offset)."""
    if ms is None:
        return "-"
    return slot_datetime(ms, timezone).strftime("%Y-%m-%d %H:%M:%S%z")


def _status(s: Schedule) -> str:
    return "[green]active[/]" if s.status.value == "active" else "[yellow]paused[/]"


def _show(s: Schedule, as_json: bool) -> None:
    if as_json:
        console.print_json(s.model_dump_json())
        return
    table = Table(box=None, show_header=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    rows: list[tuple[str, str | Text]] = [
        ("id", s.id),
        ("workflow", Text(s.workflow_id)),
        ("key", Text(s.key)),
        ("cron", Text(f"{s.cron}  ({s.timezone})")),
        ("status", _status(s)),
        ("next run", f"{_local(s.next_at, s.timezone)}  (UTC {fmt_time(s.next_at)})"),
        ("last slot", _local(s.last_slot_at, s.timezone)),
        ("last execution", s.last_execution_id or "-"),
        ("catch-up", s.catchup.value),
        ("overlap", s.overlap.value),
        ("source", s.source.value),
        ("payload", Text("-" if s.payload is None else json.dumps(s.payload, ensure_ascii=False))),
        ("created", fmt_time(s.created_at)),
        ("updated", fmt_time(s.updated_at)),
    ]
    for name, value in rows:
        table.add_row(name, value)
    console.print(table, highlight=False)


@click.group()
def schedules() -> None:
    """Cron schedules: list, create, change, pause, resume, delete, trigger now."""


@schedules.command("list")
@click.option("--workflow", "-w", "workflow_id", help="Only the schedules of this workflow.")
@click.option(
    "--limit",
    "-n",
    default=100,
    show_default=True,
    type=click.IntRange(1, 1000),
    help="Most rows to print (a page; see --cursor).",
)
@click.option("--cursor", help="Cursor printed at the end of the previous page.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
@run_async
async def list_schedules(
    ctx: click.Context, workflow_id: str | None, limit: int, cursor: str | None, as_json: bool
) -> None:
    """List schedules, by workflow and key."""
    async with client_from(ctx) as client:
        page = await client.schedules.list(workflow_id, limit=limit, cursor=cursor)
    if as_json:
        console.print_json(page.model_dump_json())
        return
    if not page.items:
        console.print("no schedules", style="dim", highlight=False)
        return
    table = Table(box=None, header_style="bold")
    table.add_column("ID", no_wrap=True, min_width=36)
    for column in ("WORKFLOW", "KEY", "CRON", "TIMEZONE", "STATUS", "NEXT RUN", "LAST SLOT"):
        table.add_column(column, overflow="fold")
    for s in page.items:
        table.add_row(
            s.id,
            Text(s.workflow_id),
            Text(s.key),
            Text(s.cron),
            s.timezone,
            _status(s),
            _local(s.next_at, s.timezone),
            _local(s.last_slot_at, s.timezone),
        )
    console.print(table, highlight=False)
    if page.next_cursor:
        console.print(
            f"more: polos schedules list --cursor {page.next_cursor}",
            style="dim",
            highlight=False,
            markup=False,
        )


@schedules.command("show")
@click.argument("schedule_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
@run_async
async def show(ctx: click.Context, schedule_id: str, as_json: bool) -> None:
    """Show one schedule."""
    async with client_from(ctx) as client:
        _show(await client.schedules.get(schedule_id), as_json)


@schedules.command("create")
@click.argument("workflow_id")
@click.argument("cron")
@click.option("--timezone", "--tz", "timezone", default="UTC", show_default=True)
@click.option("--key", "-k", default="global", show_default=True, help="One schedule per key.")
@click.option("--payload", "-p", "payload_json", help="JSON given to each run as data.")
@click.option("--catchup", type=CATCHUP, default="once", show_default=True)
@click.option("--overlap", type=OVERLAP, default="skip", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
@run_async
async def create(
    ctx: click.Context,
    workflow_id: str,
    cron: str,
    timezone: str,
    key: str,
    payload_json: str | None,
    catchup: str,
    overlap: str,
    as_json: bool,
) -> None:
    """Schedule WORKFLOW_ID at CRON (five fields, e.g. "0 9 * * 1-5").

    Creating again with the same workflow and key replaces that schedule's settings.
    """
    payload = parse_json(payload_json, "--payload")
    async with client_from(ctx) as client:
        s = await client.schedules.create(
            workflow_id, cron, timezone, key, payload, catchup=catchup, overlap=overlap
        )
    _show(s, as_json)


@schedules.command("update")
@click.argument("schedule_id")
@click.option("--cron", help="New cron expression.")
@click.option("--timezone", "--tz", "timezone", help="New IANA time zone.")
@click.option("--payload", "-p", "payload_json", help="New payload as JSON ('null' clears it).")
@click.option("--catchup", type=CATCHUP)
@click.option("--overlap", type=OVERLAP)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
@run_async
async def update(
    ctx: click.Context,
    schedule_id: str,
    cron: str | None,
    timezone: str | None,
    payload_json: str | None,
    catchup: str | None,
    overlap: str | None,
    as_json: bool,
) -> None:
    """Change a schedule's cron, timezone, payload or policies."""
    changes: dict[str, Any] = {}
    if payload_json is not None:
        changes["payload"] = parse_json(payload_json, "--payload")
    if not (changes or cron or timezone or catchup or overlap):
        raise click.UsageError("nothing to change: give --cron, --timezone, --payload, ...")
    async with client_from(ctx) as client:
        s = await client.schedules.update(
            schedule_id,
            cron=cron,
            timezone=timezone,
            catchup=catchup,
            overlap=overlap,
            **changes,
        )
    _show(s, as_json)


def _one_line(verb: str, s: Schedule) -> None:
    console.print(
        f"{verb} {s.id} ({s.workflow_id}, key {s.key}); next run {_local(s.next_at, s.timezone)}",
        highlight=False,
        markup=False,
    )


@schedules.command("pause")
@click.argument("schedule_id")
@click.pass_context
@run_async
async def pause(ctx: click.Context, schedule_id: str) -> None:
    """Pause a schedule (no slot fires until it is resumed)."""
    async with client_from(ctx) as client:
        _one_line("paused", await client.schedules.pause(schedule_id))


@schedules.command("resume")
@click.argument("schedule_id")
@click.pass_context
@run_async
async def resume(ctx: click.Context, schedule_id: str) -> None:
    """Resume a paused schedule from its next slot."""
    async with client_from(ctx) as client:
        _one_line("resumed", await client.schedules.resume(schedule_id))


@schedules.command("delete")
@click.argument("schedule_id")
@click.pass_context
@run_async
async def delete(ctx: click.Context, schedule_id: str) -> None:
    """Delete a schedule (the executions it started are kept)."""
    async with client_from(ctx) as client:
        s = await client.schedules.delete(schedule_id)
    console.print(f"deleted {s.id} ({s.workflow_id}, key {s.key})", highlight=False, markup=False)


@schedules.command("trigger")
@click.argument("schedule_id")
@click.option("--idempotency-key", help="Triggering twice with one key starts one execution.")
@click.pass_context
@run_async
async def trigger(ctx: click.Context, schedule_id: str, idempotency_key: str | None) -> None:
    """Start one run of a schedule now (its slot time is now)."""
    async with client_from(ctx) as client:
        t = await client.schedules.trigger(schedule_id, idempotency_key=idempotency_key)
    what = "started" if t.created else "already started (same idempotency key)"
    console.print(f"{what}: execution {t.execution_id}", highlight=False, markup=False)
