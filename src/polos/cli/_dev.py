"""``polos dev worker.py``: an embedded orchestrator and the worker, reloaded on changes.

Two subprocesses, so that a reload is a clean new interpreter (no stale modules):

* the orchestrator, ``python -m polos.cli.server start --local`` on SQLite
  (``.polos/dev.db`` in the current directory unless ``--database-url`` says otherwise);
* the worker, ``python -m polos.cli.main worker TARGET`` with ``POLOS_API_URL`` pointing
  at it, restarted when a watched ``*.py`` file changes.

Both print through this process, each line prefixed with ``server |`` or ``worker |``.
Ctrl-C (or SIGTERM) stops the worker first (it drains), then the orchestrator.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import httpx

from polos._version import __version__
from polos.client import PolosClient

from ._dev_child import LABEL_WIDTH, DevChild

if TYPE_CHECKING:
    from watchfiles import Change

HOST = "127.0.0.1"
DEFAULT_PORT = 8080
DB_DIR = ".polos"
DB_FILE = "dev.db"
# A worker drains in-flight executions for up to its shutdown_grace (10 s by default), then
# hands back what still runs (a few seconds more).
WORKER_STOP_SECONDS = 20.0
SERVER_STOP_SECONDS = 10.0
SERVER_START_SECONDS = 60.0
# Directories never watched (besides watchfiles' own list: .git, .venv, __pycache__, ...).
IGNORED_DIRS = (".polos", "venv", ".nox", ".ruff_cache", ".eggs", "site-packages")


def _say(message: str, *, color: str = "green", err: bool = False) -> None:
    label = click.style("dev".ljust(LABEL_WIDTH), fg=color, bold=True)
    click.echo(f"{label} | {message}", err=err)


@dataclass
class _Plan:
    target: str
    api_url: str
    reload: bool
    watch: list[Path]
    port: int | None = None  # None: attach to a running orchestrator
    database_url: str | None = None
    database_shown: str = ""
    api_key: str | None = None
    project_id: str | None = None
    env: dict[str, str] = field(default_factory=dict)


# ---------------------------------------------------------------------- the command


@click.command()
@click.argument("target")
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    help=f"Port of the embedded orchestrator (default {DEFAULT_PORT}).",
)
@click.option(
    "--database-url",
    help=f"Its database (default sqlite:///{DB_DIR}/{DB_FILE} in the current directory).",
)
@click.option(
    "--reload/--no-reload",
    default=True,
    show_default=True,
    help="Restart the worker when a watched `*.py` file changes.",
)
@click.option(
    "--watch",
    "watch_dirs",
    multiple=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Also watch this directory (repeatable). The worker file's directory is always watched.",
)
@click.option(
    "--attach",
    is_flag=True,
    help="Start no orchestrator: use the one at --api-url / POLOS_API_URL.",
)
@click.pass_context
def dev(
    ctx: click.Context,
    target: str,
    port: int | None,
    database_url: str | None,
    reload: bool,
    watch_dirs: tuple[Path, ...],
    attach: bool,
) -> None:
    """Develop locally: an orchestrator and the worker in TARGET, reloaded on changes.

    TARGET is a file.py (or module[:attribute]) as for `polos worker`. Without --attach,
    an orchestrator starts in local mode on 127.0.0.1 with a SQLite database in
    ./.polos/dev.db (delete the .polos folder to start afresh). Ctrl-C stops both.
    """
    plan = _plan(ctx, target, port, database_url, reload, watch_dirs, attach)
    try:
        code = asyncio.run(_session(plan))
    except KeyboardInterrupt:  # before the signal handlers were in place: nothing started
        code = 0
    if code:
        sys.exit(code)


def _plan(
    ctx: click.Context,
    target: str,
    port: int | None,
    database_url: str | None,
    reload: bool,
    watch_dirs: tuple[Path, ...],
    attach: bool,
) -> _Plan:
    """Check the arguments (one clear error, no traceback) and decide what to run."""
    module_part = target.partition(":")[0]
    path = Path(module_part)
    if module_part.endswith(".py") or os.sep in module_part or path.exists():
        if not path.exists():
            raise click.UsageError(f"no such file: {module_part}")
        if not path.is_file():
            raise click.UsageError(f"not a file: {module_part}")
        watched_home = path.resolve().parent
    else:  # a module: its code lives under the current directory
        watched_home = Path.cwd()
    if watch_dirs and not reload:
        raise click.UsageError("--watch needs reloading: drop --no-reload")
    watch = [watched_home]
    for extra in watch_dirs:
        resolved = extra.resolve()
        if resolved not in watch:
            watch.append(resolved)

    obj: dict[str, Any] = ctx.obj or {}
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        # Rich (our one-line errors) wraps at 80 columns when not on a terminal.
        "COLUMNS": str(_child_columns()),
    }
    if obj.get("project_id"):  # polos --project ID dev ...: the worker serves that project
        env["POLOS_PROJECT_ID"] = obj["project_id"]
    if attach:
        if port is not None or database_url is not None:
            raise click.UsageError(
                "--attach uses a running orchestrator: drop --port and --database-url"
            )
        api_url = obj.get("api_url")
        if not api_url:
            raise click.UsageError(
                "--attach needs the orchestrator's URL: --api-url or POLOS_API_URL"
            )
        env["POLOS_API_URL"] = api_url
        if obj.get("api_key"):
            env["POLOS_API_KEY"] = obj["api_key"]
        return _Plan(
            target,
            api_url,
            reload,
            watch,
            api_key=obj.get("api_key"),
            project_id=obj.get("project_id"),
            env=env,
        )

    port = port or DEFAULT_PORT
    _check_port_free(port)
    if database_url is None:
        folder = Path.cwd() / DB_DIR
        try:
            folder.mkdir(exist_ok=True)
            ignore = folder / ".gitignore"
            if not ignore.exists():
                ignore.write_text("# polos dev: local data, not for version control\n*\n")
        except OSError as exc:
            raise click.ClickException(f"cannot create {folder}: {exc.strerror or exc}") from None
        database_url = f"sqlite:///{folder / DB_FILE}"
        shown = f"{DB_DIR}/{DB_FILE}   (delete the {DB_DIR} folder to start afresh)"
    else:
        from polos.storage import describe_url

        shown = describe_url(database_url)
    api_url = f"http://{HOST}:{port}"
    env["POLOS_API_URL"] = api_url
    return _Plan(
        target,
        api_url,
        reload,
        watch,
        port=port,
        database_url=database_url,
        database_shown=shown,
        project_id=obj.get("project_id"),
        env=env,
    )


def _child_columns() -> int:
    if sys.stdout.isatty():  # as wide as what is left of the terminal after the label
        return max(shutil.get_terminal_size().columns - LABEL_WIDTH - 3, 40)
    return 1000  # a log file or a pipe: no wrapping


def _check_port_free(port: int) -> None:
    try:
        with socket.socket(socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((HOST, port))
    except OSError as exc:
        raise click.ClickException(
            f"port {port} on {HOST} is in use ({exc.strerror or exc}): another orchestrator or "
            "`polos dev`? Choose another with --port, or use that orchestrator with --attach"
        ) from None


# ---------------------------------------------------------------------- the session


async def _session(plan: _Plan) -> int:
    """Run until Ctrl-C / SIGTERM; the exit code."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    children: list[DevChild] = []
    first_signal_at: list[float] = []

    def on_signal() -> None:
        # A second Ctrl-C: do not wait for draining. (Not one within half a second of the
        # first: a wrapper such as `timeout` or a container init may forward the same one.)
        if first_signal_at and loop.time() - first_signal_at[0] >= 0.5:
            _say("stopping now", color="yellow")
            for child in children:
                child.kill()
        elif not first_signal_at:
            first_signal_at.append(loop.time())
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, on_signal)
    client = PolosClient(plan.api_url, plan.api_key, plan.project_id, timeout=5, retry_for=0)
    try:
        return await _serve(plan, stop, children, client)
    finally:
        if any(child.running for child in children):
            _say("stopping", color="yellow")
        for child in reversed(children):  # the worker first: it drains into the orchestrator
            await child.stop(child.stop_seconds)
        await client.aclose()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)


async def _serve(
    plan: _Plan, stop: asyncio.Event, children: list[DevChild], client: PolosClient
) -> int:
    server = await _start_orchestrator(plan, stop, children, client)
    if stop.is_set():
        return 0
    _banner(plan)
    worker = DevChild("worker", "cyan", _worker_argv(plan), plan.env, WORKER_STOP_SECONDS)
    children.append(worker)
    return await _Supervisor(plan, stop, server, worker, client).run()


async def _start_orchestrator(
    plan: _Plan, stop: asyncio.Event, children: list[DevChild], client: PolosClient
) -> DevChild | None:
    """The embedded orchestrator, healthy (None when attached to a running one)."""
    if plan.database_url is None:
        try:
            await client.health()
        except Exception as exc:
            raise click.ClickException(
                f"cannot reach the orchestrator at {plan.api_url}: {exc}"
            ) from None
        return None
    server = DevChild("server", "magenta", _server_argv(plan), plan.env, SERVER_STOP_SECONDS)
    children.append(server)
    await server.start(hold_output=True)  # its banner would repeat ours
    healthy = await _wait_healthy(plan.api_url, server, stop)
    if stop.is_set():
        return server
    if not healthy:
        await server.finish_output()
        for line in server.release():
            click.echo(f"{server.label} | {line}", err=True)
        raise click.ClickException("the orchestrator did not start (its output is above)")
    server.release()  # from now on its lines are shown
    return server


class _Supervisor:
    """Keeps the worker running: restarts it on changes, waits after a crash."""

    def __init__(
        self,
        plan: _Plan,
        stop: asyncio.Event,
        server: DevChild | None,
        worker: DevChild,
        client: PolosClient,
    ) -> None:
        self.plan = plan
        self.stop = stop
        self.server = server
        self.worker = worker
        self.client = client
        self.changes: asyncio.Queue[set[str]] = asyncio.Queue()
        self.watch_stop = asyncio.Event()
        self.watcher: asyncio.Task[None] | None = None
        self.next_change: asyncio.Task[set[str]] | None = None
        self.ready: asyncio.Task[None] | None = None
        self.waiting_for_change = False

    async def run(self) -> int:
        """Until Ctrl-C, the orchestrator's end, or (without reload) the worker's end."""
        stopped = asyncio.create_task(self.stop.wait())
        if self.plan.reload:
            self.watcher = asyncio.create_task(
                _watch(self.plan.watch, self.changes, self.watch_stop)
            )
        try:
            await self._start_worker()
            while True:
                await asyncio.wait(self._waits(stopped), return_when=asyncio.FIRST_COMPLETED)
                code = await self._step()
                if code is not None:
                    return code
        finally:
            for task in (self.ready, self.next_change, stopped):
                if task is not None:
                    task.cancel()
            self.watch_stop.set()
            if self.watcher is not None:
                with contextlib.suppress(TimeoutError, asyncio.CancelledError, Exception):
                    await asyncio.wait_for(self.watcher, 2.0)

    def _waits(self, stopped: asyncio.Task[bool]) -> set[asyncio.Future[Any]]:
        waits: set[asyncio.Future[Any]] = {stopped}
        if self.server is not None and self.server.exited is not None:
            waits.add(self.server.exited)
        if not self.waiting_for_change and self.worker.exited is not None:
            waits.add(self.worker.exited)
        if self.watcher is not None:
            if self.next_change is None:
                self.next_change = asyncio.create_task(self.changes.get())
            waits.update((self.next_change, self.watcher))
        return waits

    async def _step(self) -> int | None:
        """Handle what happened; an exit code when it is time to stop."""
        if self.stop.is_set():
            return 0
        server = self.server
        if server is not None and server.exited is not None and server.exited.done():
            await server.finish_output()
            code = server.exited.result()
            _say(f"the orchestrator stopped (exit code {code}); stopping", color="red", err=True)
            return 1
        if self.watcher is not None and self.watcher.done():
            problem = self.watcher.exception()
            why = f": {type(problem).__name__}: {problem}" if problem else ""
            _say(f"watching for changes stopped{why}; no more reloads", color="red", err=True)
            self.watcher = self.next_change = None
            return None
        if self.next_change is not None and self.next_change.done():
            changed = self.next_change.result() | _drain(self.changes)
            self.next_change = None
            await self._reload(changed)
            return None
        if self.worker.exited is not None and self.worker.exited.done():
            return await self._worker_exited(self.worker.exited.result())
        return None

    async def _start_worker(self) -> None:
        await self.worker.start()
        self.waiting_for_change = False
        self.ready = asyncio.create_task(_announce_ready(self.client, self.worker.pid))

    async def _reload(self, changed: set[str]) -> None:
        _say(f"reloading: {_describe(changed)}", color="yellow")
        if self.ready is not None:
            self.ready.cancel()
        await self.worker.stop(WORKER_STOP_SECONDS)
        _drain(self.changes)  # saved while the old worker drained: the new one sees them
        if not self.stop.is_set():
            await self._start_worker()

    async def _worker_exited(self, code: int) -> int | None:
        await self.worker.finish_output()
        if self.ready is not None:
            self.ready.cancel()
        if self.watcher is None:
            _say(f"the worker exited (exit code {code})", color="red", err=True)
            return code if code >= 0 else 1  # < 0: killed by a signal
        _say(
            f"the worker exited (exit code {code}); waiting for a file change to restart it",
            color="red",
        )
        self.waiting_for_change = True
        return None


def _server_argv(plan: _Plan) -> list[str]:
    assert plan.database_url is not None and plan.port is not None
    return [
        sys.executable,
        "-m",
        "polos.cli.server",
        "start",
        "--local",
        "--host",
        HOST,
        "--port",
        str(plan.port),
        "--database-url",
        plan.database_url,
    ]


def _worker_argv(plan: _Plan) -> list[str]:
    return [sys.executable, "-m", "polos.cli.main", "worker", plan.target]


async def _wait_healthy(url: str, server: DevChild, stop: asyncio.Event) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SERVER_START_SECONDS
    async with httpx.AsyncClient(timeout=2.0, trust_env=False) as http:
        while loop.time() < deadline and not stop.is_set():
            if not server.running:
                return False
            try:
                if (await http.get(url + "/health")).status_code == 200:
                    return True
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    return False


def _banner(plan: _Plan) -> None:
    def row(name: str, value: str) -> None:
        click.echo(f"  {click.style(name.ljust(9), bold=True)}: {value}")

    click.echo(click.style(f"Polos dev {__version__}", bold=True))
    row("API", f"{plan.api_url}/api/v1")
    row("UI", f"{plan.api_url}/")
    if plan.database_url is not None:
        row("database", plan.database_shown)
        if plan.port != DEFAULT_PORT:
            row("clients", f"export POLOS_API_URL={plan.api_url}")
    else:
        row("attached", "to a running orchestrator (not stopped on exit)")
    row("worker", plan.target)
    if plan.reload:
        where = ", ".join(_relative(str(p)) or "." for p in plan.watch)
        row("reload", f"on a change to a *.py file under {where}")
    else:
        row("reload", "off")
    outside = os.environ.get("POLOS_API_URL")
    if plan.database_url is not None and outside and outside.rstrip("/") != plan.api_url:
        row("note", f"POLOS_API_URL in this shell is {outside}: clients there use that one")
    click.echo("  Ctrl-C stops " + ("both." if plan.database_url is not None else "the worker."))


async def _announce_ready(client: PolosClient, pid: int) -> None:
    """Print one line once the worker with this pid is connected (it may never be)."""
    host = socket.gethostname()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 120
    while loop.time() < deadline:
        try:
            workers = await client.list_workers()
        except Exception:  # the orchestrator is busy or restarting: try again
            workers = []
        for w in workers:
            if w.pid == pid and w.hostname == host and w.status == "connected":
                served = ", ".join(sorted(w.workflows)) or "nothing"
                _say(f"worker ready (pid {pid}), serving: {served}")
                return
        await asyncio.sleep(0.2)


# ---------------------------------------------------------------------- watching


def _watch_filter() -> Callable[[Change, str], bool]:
    from watchfiles import PythonFilter

    class DevFilter(PythonFilter):
        ignore_dirs = (*PythonFilter.ignore_dirs, *IGNORED_DIRS)

    return DevFilter()


async def _watch(paths: list[Path], out: asyncio.Queue[set[str]], stop: asyncio.Event) -> None:
    from watchfiles import awatch

    async for batch in awatch(
        *paths,
        watch_filter=_watch_filter(),
        step=100,  # a save touches several files: wait for 100 ms of quiet
        stop_event=stop,
    ):
        out.put_nowait({path for _, path in batch})


def _drain(queue: asyncio.Queue[set[str]]) -> set[str]:
    found: set[str] = set()
    while not queue.empty():
        found |= queue.get_nowait()
    return found


def _relative(path: str) -> str:
    try:
        return str(Path(path).relative_to(Path.cwd()))
    except ValueError:
        return path


def _describe(paths: Iterable[str]) -> str:
    names = sorted(_relative(p) for p in paths)
    shown = ", ".join(names[:5])
    return shown + (f" and {len(names) - 5} more" if len(names) > 5 else "")
