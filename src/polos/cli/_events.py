"""``polos resume``, ``polos waits`` and ``polos events``: waits, resumes and events."""

from __future__ import annotations

import asyncio
import json
from typing import IO, Any

import click
from rich.table import Table
from rich.text import Text

from polos.client import PolosClient
from polos.errors import PolosError
from polos.protocol import Event, PublishResponse, WaitInfo, WaitKind

from ._common import client_from, console, fail, fmt_time, parse_json, run_async, styled_status


def _short(value: Any, width: int = 60) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= width else text[: width - 3] + "..."


def _data_option(data_json: str | None, data_file: IO[str] | None) -> Any:
    """The JSON value given with ``--data`` or ``--data-file`` (None without either)."""
    if data_json is not None and data_file is not None:
        raise click.UsageError("give --data or --data-file, not both")
    if data_file is None:
        return parse_json(data_json, "--data")
    try:
        text = data_file.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise click.BadParameter(f"cannot read {data_file.name}: {exc}") from None
    return parse_json(text, f"--data-file {data_file.name}")


# ---------------------------------------------------------------------- resume and waits


@click.command()
@click.argument("execution_id")
@click.argument("step_key")
@click.option("--data", "-d", "data_json", help="Data for the workflow (decision.data), as JSON.")
@click.option(
    "--data-file", type=click.File("r"), help="Read the data from a JSON file ('-': stdin)."
)
@click.option("--by", help="Who decides (recorded with the step).")
@click.option("--comment", help="Why (recorded with the step).")
@click.pass_context
@run_async
async def resume(
    ctx: click.Context,
    execution_id: str,
    step_key: str,
    data_json: str | None,
    data_file: IO[str] | None,
    by: str | None,
    comment: str | None,
) -> None:
    """Resume a suspended execution.

    EXECUTION_ID is suspended at STEP_KEY (`polos waits --kind suspend` lists them);
    the workflow receives the data as decision.data.
    """
    data = _data_option(data_json, data_file)
    async with client_from(ctx) as client:
        e = await client.resume(execution_id, step_key, data, by=by, comment=comment)
    console.print(f"{e.id} {styled_status(e.status.value)}")


def _wait_detail(w: WaitInfo) -> str:
    if w.kind == WaitKind.EVENT:
        return f"topic {w.topic}" if w.topic else "-"
    if w.kind == WaitKind.CHILD:
        return "-" if w.pending_children is None else f"{w.pending_children} pending"
    if w.kind == WaitKind.SUSPEND and w.data is not None:
        return _short(w.data)
    return "-"


@click.command()
@click.option("--kind", "-k", type=click.Choice([k.value for k in WaitKind]), help="Wait kind.")
@click.option("--workflow", "-w", "workflow_id", help="Filter by workflow id.")
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
async def waits(
    ctx: click.Context,
    kind: str | None,
    workflow_id: str | None,
    limit: int,
    cursor: str | None,
    as_json: bool,
) -> None:
    """List waiting executions, oldest wait first.

    An execution waits for a resume (suspend), an event, a time (sleep) or its
    children; it holds no worker while it waits.
    """
    async with client_from(ctx) as client:
        page = await client.list_waits(kind, workflow_id=workflow_id, limit=limit, cursor=cursor)
    if as_json:
        console.print_json(page.model_dump_json())
        return
    if not page.items:
        console.print("no execution is waiting", style="dim", highlight=False)
        return
    table = Table(box=None, header_style="bold")
    table.add_column("EXECUTION", no_wrap=True, min_width=36)
    for column in ("WORKFLOW", "STEP", "KIND", "DATA / TOPIC", "EXPIRES", "SINCE"):
        table.add_column(column, overflow="fold")
    for w in page.items:
        table.add_row(
            w.execution_id,
            Text(w.workflow_id),
            Text(w.step_key),
            w.kind.value,
            Text(_wait_detail(w)),
            fmt_time(w.expires_at),
            fmt_time(w.created_at),
        )
    console.print(table, highlight=False)
    if page.next_cursor:
        console.print(
            f"more: polos waits --cursor {page.next_cursor}", style="dim", highlight=False
        )


# ---------------------------------------------------------------------- events


@click.group()
def events() -> None:
    """Publish events and read or follow a topic."""


def _published(e: PublishResponse) -> None:
    if e.created:
        console.print(f"published {e.topic} seq {e.seq}", highlight=False, markup=False)
    else:
        console.print(
            f"already published: {e.topic} seq {e.seq} (same idempotency key, "
            f"at {fmt_time(e.created_at)})",
            highlight=False,
            markup=False,
        )
    if e.triggered:
        console.print(
            f"triggered {len(e.triggered)} execution(s): {', '.join(e.triggered)}",
            highlight=False,
        )


@events.command("publish")
@click.argument("topic")
@click.option("--data", "-d", "data_json", help="Event data as JSON.")
@click.option(
    "--data-file", type=click.File("r"), help="Read the data from a JSON file ('-': stdin)."
)
@click.option("--idempotency-key", help="Publishing twice with one key publishes one event.")
@click.option("--json", "as_json", is_flag=True, help="Print the event as JSON.")
@click.pass_context
@run_async
async def publish(
    ctx: click.Context,
    topic: str,
    data_json: str | None,
    data_file: IO[str] | None,
    idempotency_key: str | None,
    as_json: bool,
) -> None:
    """Publish an event on TOPIC."""
    data = _data_option(data_json, data_file)
    async with client_from(ctx) as client:
        event = await client.events.publish(topic, data, idempotency_key=idempotency_key)
    if as_json:
        console.print_json(event.model_dump_json())
    else:
        _published(event)


@events.command("list")
@click.argument("topic")
@click.option(
    "--after", default=0, show_default=True, type=click.IntRange(0), help="Start after this seq."
)
@click.option(
    "--limit",
    "-n",
    default=100,
    show_default=True,
    type=click.IntRange(1, 1000),
    help="Most events to print (then continue with --after).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
@run_async
async def list_events(
    ctx: click.Context, topic: str, after: int, limit: int, as_json: bool
) -> None:
    """List the events of TOPIC in order."""
    async with client_from(ctx) as client:
        page = await client.events.list(topic, after=after, limit=limit)
    if as_json:
        console.print_json(page.model_dump_json())
        return
    table = Table(box=None, header_style="bold")
    for column in ("SEQ", "PUBLISHED", "DATA", "SOURCE"):
        table.add_column(column, overflow="fold")
    for e in page.items:
        table.add_row(
            str(e.seq),
            fmt_time(e.created_at),
            Text(_short(e.data, 100)),
            e.source_execution_id or "-",
        )
    console.print(table, highlight=False)
    if page.next_after is not None:
        console.print(
            f"more: polos events list {topic} --after {page.next_after}",
            style="dim",
            highlight=False,
            markup=False,
        )


def _tail_line(e: Event, as_json: bool) -> str:
    if as_json:
        return e.model_dump_json()
    return (
        f"{e.seq}  {fmt_time(e.created_at)}  {json.dumps(e.data, ensure_ascii=False, default=str)}"
    )


async def _tail(
    client: PolosClient, topic: str, after: int | None, count: int | None, as_json: bool
) -> None:
    async with client:
        seen = 0
        stream = client.events.stream(topic, after=after)
        try:
            async for event in stream:
                click.echo(_tail_line(event, as_json))
                seen += 1
                if count is not None and seen >= count:
                    return
        finally:
            await stream.aclose()


@events.command("tail")
@click.argument("topic")
@click.option(
    "--after", type=click.IntRange(0), help="Start with the logged events after this seq (0: all)."
)
@click.option("--count", "-c", type=click.IntRange(1), help="Exit after this many events.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per event.")
@click.pass_context
def tail(
    ctx: click.Context, topic: str, after: int | None, count: int | None, as_json: bool
) -> None:
    """Print the events of TOPIC as they are published, until Ctrl-C.

    Without --after, only events published from now on are printed.
    """
    try:
        asyncio.run(_tail(client_from(ctx), topic, after, count, as_json))
    except KeyboardInterrupt:
        pass
    except PolosError as exc:
        fail(str(exc))
