"""``polos-server projects ...`` and ``polos-server keys ...``: run against the database.

They work without a running orchestrator (the first admin key has to come from
somewhere) and need access to the database, which is the credential here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import click
from rich.table import Table

from polos.errors import PolosError
from polos.protocol import ApiKeyInfo
from polos.storage import Store

from ._common import console, fail, fmt_time

T = TypeVar("T")

_DB = click.option(
    "--database-url",
    envvar="POLOS_DATABASE_URL",
    help="sqlite:///path.db (default ~/.polos/polos.db) or postgresql://user@host/db.",
)


def _with_store(database_url: str | None, fn: Callable[..., Awaitable[T]]) -> T:
    from polos.protocol import DEFAULT_PROJECT_ID
    from polos.storage import open_store

    async def go() -> T:
        store = await open_store(database_url)
        try:
            await store.ensure_project(DEFAULT_PROJECT_ID, "Default project")
            return await fn(store)
        finally:
            await store.close()

    try:
        return asyncio.run(go())
    except PolosError as exc:
        fail(str(exc))
        raise SystemExit(1) from exc


@click.group()
def projects() -> None:
    """Create and list projects."""


@projects.command("create")
@click.argument("project_id")
@click.option("--name", default="", help="A readable name.")
@_DB
def create_project(project_id: str, name: str, database_url: str | None) -> None:
    """Create a project (then give it a key: polos-server keys create --project ID)."""
    from polos.protocol import CreateProjectRequest

    try:
        CreateProjectRequest(id=project_id, name=name)
    except ValueError:
        fail(f"invalid project id {project_id!r}: letters, digits, '_', '-', '.'; 1-63 characters")
        return
    created = _with_store(database_url, lambda s: s.create_project(project_id, name))
    if created is None:
        fail(f"project {project_id!r} already exists")
        return
    console.print(f"created project [bold]{created.id}[/]")


@projects.command("list")
@_DB
def list_projects(database_url: str | None) -> None:
    """List projects."""
    items = _with_store(database_url, lambda s: s.list_projects())
    table = Table(box=None, header_style="bold")
    for column in ("ID", "NAME", "CREATED"):
        table.add_column(column)
    for p in items:
        table.add_row(p.id, p.name, fmt_time(p.created_at))
    console.print(table)


@click.group()
def keys() -> None:
    """Create, list and revoke API keys."""


@keys.command("create")
@click.option("--project", "project_id", help="The project the key is confined to.")
@click.option("--admin", is_flag=True, help="A server-wide admin key (no project).")
@click.option("--name", required=True, help="What the key is for (shown in lists).")
@_DB
def create_key(project_id: str | None, admin: bool, name: str, database_url: str | None) -> None:
    """Create a key and print its token once (only its hash is stored)."""
    if admin == (project_id is not None):
        fail("give either --project ID (a project key) or --admin (an admin key)")
        return

    async def go(store: Store) -> tuple[ApiKeyInfo, str] | None:
        if project_id is not None and project_id not in {p.id for p in await store.list_projects()}:
            return None
        return await store.create_api_key(project_id, name, role="admin" if admin else "project")

    made = _with_store(database_url, go)
    if made is None:
        fail(f"project {project_id!r} does not exist (polos-server projects create {project_id})")
        return
    info, token = made
    scope = "admin" if admin else f"project {project_id}"
    console.print(f"created key [bold]{info.id}[/] ({scope})")
    console.print("token (shown once, stored only as a hash):", highlight=False)
    click.echo(token)


@keys.command("list")
@click.option("--project", "project_id", help="Only this project's keys.")
@_DB
def list_keys(project_id: str | None, database_url: str | None) -> None:
    """List keys (never their secrets)."""
    items = _with_store(database_url, lambda s: s.list_api_keys(project_id))
    table = Table(box=None, header_style="bold")
    for column in ("ID", "NAME", "ROLE", "PROJECT", "CREATED", "LAST USED", "REVOKED"):
        table.add_column(column)
    for k in items:
        table.add_row(
            k.id,
            k.name,
            k.role,
            k.project_id or "-",
            fmt_time(k.created_at),
            fmt_time(k.last_used_at) if k.last_used_at else "-",
            fmt_time(k.revoked_at) if k.revoked_at else "-",
        )
    console.print(table)


@keys.command("revoke")
@click.argument("key_id")
@_DB
def revoke_key(key_id: str, database_url: str | None) -> None:
    """Revoke a key: orchestrators refuse it within a second and drop its workers."""
    info = _with_store(database_url, lambda s: s.revoke_api_key(key_id))
    if info is None:
        fail(f"no API key {key_id!r}")
        return
    console.print(f"revoked key [bold]{info.id}[/] ({info.name})")
