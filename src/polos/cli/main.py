"""``polos``: run workflows and inspect executions from the terminal."""

from __future__ import annotations

import json
from typing import Any

import click
from rich.table import Table

from polos._version import __version__
from polos.client import PolosClient
from polos.errors import PolosError, WorkflowFailedError

from ._approvals import approval_link  # approval links
from ._common import (
    client_from,
    console,
    fail,
    fmt_duration,
    fmt_time,
    follow_terminal_width,
    parse_json,
    run_async,
    styled_status,
)
from ._dev import dev
from ._events import events, resume, waits
from ._queues import queues, rate_limits
from ._schedules import schedules
from ._sessions import sessions

STATUSES = ["queued", "running", "waiting", "completed", "failed", "cancelled"]


def _dump(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


@click.group()
@click.version_option(__version__, prog_name="polos")
@click.option(
    "--api-url", envvar="POLOS_API_URL", help="Orchestrator URL (default http://127.0.0.1:8080)."
)
@click.option("--api-key", envvar="POLOS_API_KEY", help="API key.")
@click.option("--project", "project_id", envvar="POLOS_PROJECT_ID", help="Project id.")
@click.pass_context
def main(
    ctx: click.Context, api_url: str | None, api_key: str | None, project_id: str | None
) -> None:
    """Run workflows and inspect executions."""
    follow_terminal_width()
    ctx.obj = {"api_url": api_url, "api_key": api_key, "project_id": project_id, "retry_for": 3.0}


main.add_command(resume)
main.add_command(approval_link)  # approval links
main.add_command(waits)
main.add_command(events)
main.add_command(schedules)
main.add_command(queues)
main.add_command(rate_limits)
main.add_command(sessions)
main.add_command(dev)  # polos dev: embedded orchestrator + reloading worker


@main.command()
@click.argument("workflow_id")
@click.option("--input", "-i", "input_json", help="Payload as JSON.")
@click.option("--idempotency-key", help="Starting twice with one key starts one execution.")
@click.option("--wait/--no-wait", default=False, help="Wait for the result and print it.")
@click.option("--timeout", type=float, help="With --wait: give up after this many seconds.")
@click.option(
    "--run-timeout",
    type=click.FloatRange(min=0, min_open=True),
    help="Fail the execution once it has run this many seconds (overrides the workflow's).",
)
@click.pass_context
@run_async
async def run(
    ctx: click.Context,
    workflow_id: str,
    input_json: str | None,
    idempotency_key: str | None,
    wait: bool,
    timeout: float | None,
    run_timeout: float | None,
) -> None:
    """Start an execution of WORKFLOW_ID."""
    payload = parse_json(input_json, "--input")
    async with client_from(ctx) as client:
        handle = await client.invoke(
            workflow_id, payload, idempotency_key=idempotency_key, run_timeout=run_timeout
        )
        if not wait:
            console.print(handle.id)
            return
        with console.status(f"running {workflow_id} ({handle.id})", spinner="dots"):
            execution = await client.wait(handle.id, timeout=timeout)
        try:
            result = client.result_of(execution)
        except WorkflowFailedError as exc:
            fail(
                f"{execution.status.value}: {exc.error_type}: {exc.error_message} (execution {handle.id})"
            )
            return
        console.print_json(_dump(result)) if not isinstance(result, str) else console.print(result)


@main.group()
def executions() -> None:
    """List and inspect executions."""


@executions.command("list")
@click.option(
    "--status",
    "-s",
    multiple=True,
    type=click.Choice(STATUSES),
    help="Filter by status (repeatable).",
)
@click.option("--workflow", "-w", "workflow_id", help="Filter by workflow id.")
@click.option(
    "--limit",
    "-n",
    default=20,
    show_default=True,
    type=click.IntRange(1, 500),
    help="Most rows to print (a page; see --cursor).",
)
@click.option("--cursor", help="Cursor printed at the end of the previous page.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
@run_async
async def list_executions(
    ctx: click.Context,
    status: tuple[str, ...],
    workflow_id: str | None,
    limit: int,
    cursor: str | None,
    as_json: bool,
) -> None:
    """List executions, newest first."""
    async with client_from(ctx) as client:
        page = await client.list_executions(
            status=status, workflow_id=workflow_id, limit=limit, cursor=cursor
        )
    if as_json:
        console.print_json(page.model_dump_json())
        return
    table = Table(box=None, header_style="bold")
    table.add_column("ID", no_wrap=True, min_width=36)
    for column in ("WORKFLOW", "STATUS", "ATTEMPT", "CREATED", "DURATION"):
        table.add_column(column, overflow="fold")
    for e in page.items:
        table.add_row(
            e.id,
            e.workflow_id,
            styled_status(e.status.value),
            str(e.attempt),
            fmt_time(e.created_at),
            fmt_duration(e.started_at, e.completed_at),
        )
    console.print(table)
    if page.next_cursor:
        console.print(
            f"more: polos executions list --cursor {page.next_cursor}", style="dim", highlight=False
        )


@executions.command("show")
@click.argument("execution_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
@run_async
async def show(ctx: click.Context, execution_id: str, as_json: bool) -> None:
    """Show one execution and its step log."""
    async with client_from(ctx) as client:
        e = await client.get_execution(execution_id)
        steps = await client.list_steps(execution_id)
    if as_json:
        console.print_json(
            _dump(
                {
                    "execution": e.model_dump(mode="json"),
                    "steps": [s.model_dump(mode="json") for s in steps],
                }
            )
        )
        return
    console.print(f"[bold]{e.id}[/]  {e.workflow_id}  {styled_status(e.status.value)}")
    console.print(
        f"  created {fmt_time(e.created_at)}  started {fmt_time(e.started_at)}  finished {fmt_time(e.completed_at)}"
    )
    console.print(
        f"  attempt {e.attempt} (failed {e.failed_attempts}, crashed {e.crashed_attempts})  worker {e.worker_id or '-'}"
    )
    if e.code_changed:
        console.print("  [yellow]replayed under changed workflow code[/]")
    console.print(f"  payload: {json.dumps(e.payload, default=str)}", highlight=False)
    if e.result is not None:
        console.print(f"  result:  {json.dumps(e.result, default=str)}", highlight=False)
    if e.run_timeout_ms is not None:
        counted = "waits included" if e.timeout_counts_waits else "running time"
        deadline = f", times out at {fmt_time(e.deadline_at)}" if e.deadline_at else ""
        console.print(
            f"  run timeout {e.run_timeout_ms / 1000:g} s ({counted}){deadline}", highlight=False
        )
    if e.cancelled_by is not None:
        console.print(
            f"  cancelled by {e.cancelled_by} at {fmt_time(e.completed_at)}", highlight=False
        )
    if e.error is not None:
        console.print(f"  [red]error:   {e.error.type}: {e.error.message}[/]", highlight=False)
    for a in e.attempts:
        detail = f": {a.error.type}: {a.error.message}" if a.error else ""
        console.print(
            f"  attempt {a.attempt} {a.outcome} on {a.worker_id or '-'} at {fmt_time(a.ended_at)}{detail}",
            highlight=False,
        )
    table = Table(box=None, header_style="bold", title="steps", title_justify="left")
    for column in ("#", "KEY", "KIND", "ATTEMPTS", "DURATION", "OUTPUT / ERROR"):
        table.add_column(column)
    for s in steps:
        outcome = (
            f"[red]{s.error.type}: {s.error.message}[/]"
            if s.error
            else json.dumps(s.output, default=str)[:80]
        )
        table.add_row(
            str(s.seq),
            s.key,
            s.kind.value,
            str(s.attempts),
            fmt_duration(s.started_at, s.completed_at),
            outcome,
        )
    console.print(table)


@main.command()
@click.argument("execution_id")
@click.option("--reason", help="Recorded with the cancellation.")
@click.option("--by", help="Who cancels (recorded; default: api).")
@click.pass_context
@run_async
async def cancel(ctx: click.Context, execution_id: str, reason: str | None, by: str | None) -> None:
    """Cancel an execution, its children and its waits (a running one stops at once)."""
    async with client_from(ctx) as client:
        e = await client.cancel(execution_id, reason=reason, by=by)
    console.print(f"{e.id} {styled_status(e.status.value)}")
    if e.cancelled_by is not None:
        console.print(
            f"  cancelled by {e.cancelled_by} at {fmt_time(e.completed_at)}", highlight=False
        )


@main.command()
@click.argument("execution_id")
@click.option("--by", help="Who retries (recorded; default: api).")
@click.pass_context
@run_async
async def retry(ctx: click.Context, execution_id: str, by: str | None) -> None:
    """Run a failed or cancelled execution again from where it stopped (completed steps
    are not run again)."""
    async with client_from(ctx) as client:
        e = await client.retry(execution_id, by=by)
    console.print(f"{e.id} {styled_status(e.status.value)}")


@main.command()
@click.pass_context
@run_async
async def workflows(ctx: click.Context) -> None:
    """List registered workflows."""
    async with client_from(ctx) as client:
        items = await client.list_workflows()
    table = Table(box=None, header_style="bold")
    for column in ("ID", "KIND", "FINGERPRINT", "LAST SEEN"):
        table.add_column(column)
    for w in items:
        table.add_row(w.id, w.kind, w.fingerprint, fmt_time(w.last_seen_at))
    console.print(table)


@main.command()
@click.pass_context
@run_async
async def workers(ctx: click.Context) -> None:
    """List workers."""
    async with client_from(ctx) as client:
        items = await client.list_workers()
    table = Table(box=None, header_style="bold")
    table.add_column("ID", no_wrap=True)
    for column in ("STATUS", "RUNNING", "MAX", "LAST HEARTBEAT", "WORKFLOWS"):
        table.add_column(column, overflow="fold")
    for w in items:
        table.add_row(
            w.id,
            w.status,
            str(w.running),
            str(w.max_concurrent),
            fmt_time(w.last_heartbeat_at),
            ", ".join(w.workflows),
        )
    console.print(table)


@main.command()
@click.argument("target")
@click.option(
    "--max-concurrent",
    type=click.IntRange(1, 100_000),
    help="Override the worker's max_concurrent.",
)
@click.pass_context
def worker(ctx: click.Context, target: str, max_concurrent: int | None) -> None:
    """Run the worker defined in TARGET (a file.py or module[:attribute]).

    TARGET may define a ``Worker`` (used as is) or only ``@workflow`` functions
    (served by a new worker).
    """
    import asyncio

    from polos._logs import setup_logging
    from polos.worker import Worker

    from ._loader import LoadError, load_worker

    obj: dict[str, Any] = ctx.obj
    try:
        setup_logging()  # logs: POLOS_LOG_FORMAT=text|json, POLOS_LOG_LEVEL
    except PolosError as exc:  # an unknown format or level
        fail(str(exc))
        return
    try:
        client = PolosClient(obj["api_url"], obj["api_key"], obj["project_id"])
    except PolosError as exc:  # a malformed --api-url, for instance
        fail(str(exc))
        return
    try:
        instance: Worker = load_worker(target, client, max_concurrent)
    except LoadError as exc:
        fail(str(exc))
        return
    try:
        asyncio.run(instance.run())
    except KeyboardInterrupt:
        pass
    except Exception as exc:  # a fatal refusal by the orchestrator, for instance
        fail(f"worker stopped: {exc}")


if __name__ == "__main__":
    main()
