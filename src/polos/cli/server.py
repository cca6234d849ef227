"""``polos-server``: start the orchestrator, or migrate its database."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from collections.abc import Coroutine
from types import FrameType
from typing import Any

import click
import uvicorn

from polos._logs import setup_logging
from polos._version import __version__
from polos.errors import PolosError
from polos.protocol import DEFAULT_PROJECT_ID

from ._common import console, fail
from ._keys import keys, projects
from ._prune import prune  # retention


def _configure_logging(level: str) -> None:
    # logs: text or JSON lines (POLOS_LOG_FORMAT) with execution ids; see polos._logs
    setup_logging(level, stream=sys.stderr)


@click.group()
@click.version_option(__version__, prog_name="polos-server")
def main() -> None:
    """Run the Polos orchestrator."""


@main.command()
@click.option(
    "--database-url",
    envvar="POLOS_DATABASE_URL",
    help="sqlite:///path.db (default ~/.polos/polos.db) or postgresql://user@host/db.",
)
@click.option(
    "--host", default="127.0.0.1", show_default=True, envvar="POLOS_HOST", help="Interface to bind."
)
@click.option(
    "--port",
    default=8080,
    show_default=True,
    type=click.IntRange(0, 65535),
    envvar="POLOS_PORT",
    help="Port to bind.",
)
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
    envvar="POLOS_LOG_LEVEL",
)
@click.option(
    "--lease-ms",
    type=click.IntRange(100, 3_600_000),
    envvar="POLOS_LEASE_MS",
    help="Worker lease (default 5000).",
)
@click.option(
    "--heartbeat-ms",
    type=click.IntRange(20, 600_000),
    envvar="POLOS_HEARTBEAT_MS",
    help="Worker heartbeat (default 1000).",
)
@click.option(
    "--local",
    is_flag=True,
    envvar="POLOS_LOCAL",
    help="Local mode: no API keys; only on a loopback address (this machine).",
)
def start(
    database_url: str | None,
    host: str,
    port: int,
    log_level: str,
    lease_ms: int | None,
    heartbeat_ms: int | None,
    local: bool,
) -> None:
    """Start the orchestrator (API, worker channel and UI).

    Every request needs an API key (the first start prints an admin key) unless the
    server is started with --local, which only binds a loopback address.
    """
    from polos.orchestrator import OrchestratorSettings, create_app, is_loopback
    from polos.storage import describe_url, normalize_url

    if local and not is_loopback(host):
        fail(
            f"--local (no API keys) serves this machine only, but --host {host} is not a "
            "loopback address: bind 127.0.0.1, or start without --local and use API keys "
            "(polos-server keys create)"
        )
        return

    log_level = log_level.lower()
    try:
        _configure_logging(log_level)
    except PolosError as exc:  # POLOS_LOG_FORMAT is neither text nor json
        fail(str(exc))
        return
    try:
        settings = OrchestratorSettings.from_env(
            database_url=database_url,
            host=host,
            port=port,
            lease_ms=lease_ms,
            heartbeat_ms=heartbeat_ms,
            local=local or None,
        )
        url = normalize_url(settings.database_url)
    except PolosError as exc:
        fail(str(exc))
        return
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as exc:
        fail(f"could not start on {host}:{port}: {exc.strerror or exc}")
        return
    try:
        asyncio.run(_check_database(settings.database_url))
        admin_token = None if settings.local else asyncio.run(_bootstrap_admin_key(url))
    except PolosError as exc:
        fail(str(exc))
        return
    base = f"http://{host}:{port}"
    console.print(f"[bold]Polos orchestrator[/] {__version__}")
    console.print(
        f"  project id : [bold cyan]{os.environ.get('POLOS_PROJECT_ID', DEFAULT_PROJECT_ID)}[/]"
    )
    console.print(f"  API        : {base}/api/v1   (docs: {base}/docs)")
    console.print(f"  UI         : {base}/")
    console.print(f"  database   : {describe_url(url)}")
    if settings.local:
        console.print("  auth       : [yellow]local mode[/] (no API keys; this machine only)")
    else:
        console.print("  auth       : API keys (Authorization: Bearer <key>)")
    if admin_token is not None:
        console.print(
            "  [bold]admin API key[/] (shown once, stored only as a hash; save it now):\n"
            f"      [bold green]{admin_token}[/]\n"
            "      export POLOS_API_KEY=<that key> for clients, workers and the CLI",
            highlight=False,
        )
    console.print(
        "  workers connect with PolosClient(api_url=...) — Ctrl-C stops the server", highlight=False
    )
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level if log_level != "info" else "warning",
        access_log=False,
        log_config=None,  # logs: uvicorn's records go through our handler (text or JSON)
        ws_max_size=256 * 1024 * 1024,
        ws_ping_interval=20,
        ws_ping_timeout=20,
        timeout_graceful_shutdown=5,
        lifespan="on",
    )
    server = _GracefulServer(config)
    try:
        ok = _run_loop(_serve(server))
    except KeyboardInterrupt:
        ok = True
    except SystemExit:  # uvicorn exits when it cannot bind
        ok = False
    if not ok:
        fail(f"could not start on {host}:{port} (see the log above)")


async def _bootstrap_admin_key(url: str) -> str | None:
    """On a database without any admin key, make one (its token is printed once)."""
    from polos.storage import open_store

    store = await open_store(url)
    try:
        if await store.count_admin_keys() > 0:
            return None
        _, token = await store.create_api_key(None, "bootstrap admin", role="admin")
        return token
    finally:
        await store.close()


class _GracefulServer(uvicorn.Server):
    """Tells the gateway about a shutdown *before* uvicorn closes the worker sockets.

    Otherwise every closing worker socket would look like a dead worker, and a
    graceful restart would requeue (and count as crashed) all running executions.
    """

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        runtime = getattr(getattr(self.config.app, "state", None), "runtime", None)
        if runtime is not None:
            runtime.gateway.begin_shutdown()
        super().handle_exit(sig, frame)


def _run_loop(main: Coroutine[Any, Any, bool]) -> bool:
    """Run the server on uvloop when it is installed (it is, with the default extras)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - depends on the install
        return asyncio.run(main)
    return uvloop.run(main)


async def _check_database(url: str | None) -> None:
    """Open (and migrate) the database once before serving, so problems are one clear line."""
    from polos.storage import open_store

    store = await open_store(url)
    await store.close()


async def _serve(server: uvicorn.Server) -> bool:
    await server.serve()
    return bool(server.started)


@main.command()
@click.option(
    "--database-url",
    envvar="POLOS_DATABASE_URL",
    help="Database to migrate (default ~/.polos/polos.db).",
)
def migrate(database_url: str | None) -> None:
    """Apply pending database migrations, then exit."""
    from polos.storage import describe_url, migrations, normalize_url, open_store

    async def go() -> None:
        store = await open_store(database_url, run_migrations=True)
        try:
            dialect = store.dialect.name
            console.print(
                f"database {describe_url(normalize_url(database_url))} is at schema version "
                f"{max(m.version for m in migrations(dialect))}"
            )
        finally:
            await store.close()

    try:
        asyncio.run(go())
    except PolosError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot open the database: {exc}")


main.add_command(prune)  # retention: polos-server prune
main.add_command(projects)
main.add_command(keys)

if __name__ == "__main__":
    main()
