"""``polos queues`` and ``polos rate-limits``: flow-control state and settings."""

from __future__ import annotations

import json

import click
from rich.table import Table

from polos.protocol import QueueInfo, QueueList

from ._common import client_from, console, fmt_time, run_async


def _limit(value: int | None) -> str:
    return "-" if value is None else str(value)


def _window(period_ms: int) -> str:
    seconds = period_ms / 1000
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g} {unit}"
    return f"{seconds:g} s"


def _queue_table(queues: QueueList) -> Table:
    table = Table(box=None, header_style="bold")
    for column in ("QUEUE", "LIMIT", "PER KEY", "RUNNING", "QUEUED", "DELAYED", "WAITING", "RATE"):
        table.add_column(column, no_wrap=column == "QUEUE")
    for q in queues.items:
        rate = ", ".join(
            r
            for r in (q.rate_limit, q.per_key_rate_limit and f"{q.per_key_rate_limit} (per key)")
            if r
        )
        if q.rate_blocked_until is not None:
            rate += f" [yellow]exhausted until {fmt_time(q.rate_blocked_until)}[/]"
        table.add_row(
            q.name,
            _limit(q.concurrency_limit),
            _limit(q.per_key_limit),
            str(q.running),
            str(q.queued),
            str(q.delayed),
            str(q.waiting),
            rate or "-",
        )
    return table


def _rate_table(queues: QueueList) -> Table:
    table = Table(box=None, header_style="bold")
    for column in ("RATE LIMIT", "LIMIT", "WINDOW", "USED", "KEYS"):
        table.add_column(column)
    for r in queues.rate_limits:
        table.add_row(r.name, str(r.limit), _window(r.period_ms), str(r.used), str(r.keys))
    return table


def _keys_table(queue: QueueInfo) -> Table:
    table = Table(box=None, header_style="bold")
    for column in ("KEY", "RUNNING", "QUEUED"):
        table.add_column(column)
    for k in queue.keys:
        table.add_row(k.key, str(k.running), str(k.queued))
    return table


@click.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
@click.pass_context
def queues(ctx: click.Context, as_json: bool) -> None:
    """Queues (limits, running, waiting for a slot) and rate limits (usage)."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(_list, as_json=as_json)


@queues.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
@click.pass_context
@run_async
async def _list(ctx: click.Context, as_json: bool) -> None:
    """List queues and rate limits."""
    async with client_from(ctx) as client:
        state = await client.queues.list()
    if as_json:
        click.echo(state.model_dump_json(indent=2))
        return
    if not state.items and not state.rate_limits:
        console.print("no queues or rate limits yet")
        return
    if state.items:
        console.print(_queue_table(state))
    if state.rate_limits:
        console.print()
        console.print(_rate_table(state))


@queues.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
@run_async
async def show(ctx: click.Context, name: str, as_json: bool) -> None:
    """Show one queue, with its busiest concurrency keys."""
    async with client_from(ctx) as client:
        queue = await client.queues.get(name)
    if as_json:
        click.echo(queue.model_dump_json(indent=2))
        return
    console.print(_queue_table(QueueList(items=[queue], rate_limits=[])))
    if queue.keys:
        console.print()
        console.print(_keys_table(queue))


@click.group("rate-limits")
def rate_limits() -> None:
    """Define rate limits (units per sliding window)."""


@rate_limits.command("set")
@click.argument("name")
@click.option(
    "--limit", required=True, type=click.IntRange(1, 1_000_000_000), help="Units per window."
)
@click.option(
    "--period", required=True, type=click.FloatRange(0.001, 31 * 86400), help="Window in seconds."
)
@click.pass_context
@run_async
async def set_limit(ctx: click.Context, name: str, limit: int, period: float) -> None:
    """Create or change rate limit NAME."""
    async with client_from(ctx) as client:
        info = await client.queues.set_rate_limit(name, limit, period)
    console.print(f"{info.name}: {info.limit} per {_window(info.period_ms)} ({info.used} used now)")


@rate_limits.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
@run_async
async def list_limits(ctx: click.Context, as_json: bool) -> None:
    """List rate limits with their current usage."""
    async with client_from(ctx) as client:
        state = await client.queues.list()
    if as_json:
        click.echo(json.dumps([r.model_dump() for r in state.rate_limits], indent=2))
        return
    console.print(_rate_table(state))
