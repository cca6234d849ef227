"""``polos-server prune``: apply the retention policy once (or count what it would delete)."""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING

import click

from polos.errors import PolosError

from ._common import console, fail

if TYPE_CHECKING:
    from polos.orchestrator._retention import RetentionSettings


@click.command()
@click.option(
    "--database-url",
    envvar="POLOS_DATABASE_URL",
    help="sqlite:///path.db (default ~/.polos/polos.db) or postgresql://user@host/db.",
)
@click.option(
    "--days",
    type=float,
    help="Prune executions that finished more than this many days ago "
    "(default: POLOS_RETENTION_DAYS).",
)
@click.option(
    "--event-days",
    type=float,
    help="Prune events older than this many days (default: POLOS_EVENT_RETENTION_DAYS, "
    "else --days).",
)
@click.option(
    "--batch",
    type=click.IntRange(1, 100_000),
    help="Rows per transaction (default: POLOS_RETENTION_BATCH, else 500).",
)
@click.option("--dry-run", is_flag=True, help="Only count what would be pruned.")
def prune(
    database_url: str | None,
    days: float | None,
    event_days: float | None,
    batch: int | None,
    dry_run: bool,
) -> None:
    """Delete finished executions (with their steps) and events older than the retention.

    Running, queued and waiting executions are never touched, nor is anything of a
    workflow tree that is still running. Safe to run while orchestrators are up.
    """
    from polos.orchestrator._retention import RetentionSettings, days_to_ms

    try:
        from_env = RetentionSettings.from_env()
        executions_ms = (
            days_to_ms(days, "--days")
            if days is not None
            else (from_env.executions_ms if from_env else None)
        )
        if event_days is not None:
            events_ms = days_to_ms(event_days, "--event-days")
        elif days is not None and not os.environ.get("POLOS_EVENT_RETENTION_DAYS", "").strip():
            events_ms = executions_ms
        else:
            events_ms = from_env.events_ms if from_env else None
        if executions_ms is None and events_ms is None:
            fail(
                "nothing to prune: pass --days (or --event-days), "
                "or set POLOS_RETENTION_DAYS / POLOS_EVENT_RETENTION_DAYS"
            )
            return
        settings = RetentionSettings(
            executions_ms=executions_ms,
            events_ms=events_ms,
            batch=batch or (from_env.batch if from_env else 500),
        )
    except PolosError as exc:
        fail(str(exc))
        return
    try:
        asyncio.run(_prune(database_url, settings, dry_run))
    except PolosError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot open the database: {exc}")


async def _prune(database_url: str | None, settings: RetentionSettings, dry_run: bool) -> None:
    from polos.orchestrator._retention import prune_round
    from polos.protocol import now_ms
    from polos.storage import count_prunable, describe_url, normalize_url, open_store

    store = await open_store(database_url)
    try:
        where = describe_url(normalize_url(database_url))
        now = now_ms()
        executions_before = (
            now - settings.executions_ms if settings.executions_ms is not None else None
        )
        events_before = now - settings.events_ms if settings.events_ms is not None else None
        if dry_run:
            found = await count_prunable(
                store, executions_before=executions_before, events_before=events_before
            )
            console.print(f"dry run on {where}: would prune", highlight=False)
            _print_counts(found.executions, found.steps, found.waits, found.events)
            return
        counts = await prune_round(store, settings, now=now)
        console.print(f"pruned {where} in {counts.batches} batches:", highlight=False)
        _print_counts(counts.executions, counts.steps, counts.waits, counts.events)
    finally:
        await store.close()


def _print_counts(executions: int, steps: int, waits: int, events: int) -> None:
    console.print(f"  executions : {executions}", highlight=False)
    console.print(f"  steps      : {steps}", highlight=False)
    console.print(f"  waits      : {waits}", highlight=False)
    console.print(f"  events     : {events}", highlight=False)
