"""A subprocess of ``polos dev`` (the orchestrator or the worker), its output echoed with a label."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys

import click

LABEL_WIDTH = 6
LINE_LIMIT = 4 * 1024 * 1024

# Run before the real command (Linux): the child gets SIGTERM when `polos dev` dies, even
# by SIGKILL, so no orchestrator is left holding the port. execv keeps the pid.
_ORPHAN_GUARD = (
    "import ctypes, os, sys\n"
    "try:\n"
    "    ctypes.CDLL(None, use_errno=True).prctl(1, 15)  # PR_SET_PDEATHSIG, SIGTERM\n"
    "except Exception:\n"
    "    pass\n"
    "if os.getppid() != int(sys.argv[1]):\n"
    "    sys.exit(0)\n"
    "os.execv(sys.argv[2], sys.argv[2:])\n"
)


class DevChild:
    """One subprocess whose output is echoed line by line with a coloured label."""

    def __init__(
        self, label: str, color: str, argv: list[str], env: dict[str, str], stop_seconds: float
    ) -> None:
        self.stop_seconds = stop_seconds
        self.label = click.style(label.ljust(LABEL_WIDTH), fg=color, bold=True)
        self.argv = argv
        self.env = env
        self.proc: asyncio.subprocess.Process | None = None
        self.exited: asyncio.Task[int] | None = None
        self._pump: asyncio.Task[None] | None = None
        self._held: list[str] | None = None

    async def start(self, *, hold_output: bool = False) -> None:
        """Start the process; with ``hold_output``, keep its lines until :meth:`release`."""
        self._held = [] if hold_output else None
        argv = self.argv
        if sys.platform == "linux":
            argv = [sys.executable, "-c", _ORPHAN_GUARD, str(os.getpid()), *argv]
        self.proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=self.env,
            start_new_session=True,  # Ctrl-C reaches `polos dev` only; it stops us in order
            limit=LINE_LIMIT,
        )
        assert self.proc.stdout is not None
        self._pump = asyncio.create_task(self._echo(self.proc.stdout))
        self.exited = asyncio.create_task(self.proc.wait())

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def release(self) -> list[str]:
        """Echo from now on; the lines held so far."""
        held, self._held = self._held or [], None
        return held

    async def _echo(self, stream: asyncio.StreamReader) -> None:
        while True:
            try:
                raw = await stream.readline()
            except ValueError:  # a line over LINE_LIMIT: asyncio dropped it
                raw = b"[a line too long to show]\n"
            if not raw:
                return
            line = raw.decode(errors="replace").rstrip("\r\n")
            if self._held is not None:
                self._held.append(line)
            else:
                click.echo(f"{self.label} | {line}")

    def _signal_group(self, sig: int) -> None:
        if self.proc is None:
            return
        # The whole group (the user's code may have started processes of its own), once:
        # a second SIGTERM would make the orchestrator skip its graceful shutdown.
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL at once (a second Ctrl-C)."""
        if self.running:
            self._signal_group(signal.SIGKILL)

    async def stop(self, timeout: float) -> int | None:
        """SIGTERM, up to ``timeout`` seconds to exit, then SIGKILL; the exit code."""
        proc = self.proc
        if proc is None:
            return None
        if proc.returncode is None:
            self._signal_group(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), timeout)
            except TimeoutError:
                self._signal_group(signal.SIGKILL)
                await proc.wait()
        await self.finish_output()
        return proc.returncode

    async def finish_output(self) -> None:
        """Echo what is left in the pipe (a grandchild holding it open is not waited for)."""
        if self._pump is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._pump), 1.0)
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
