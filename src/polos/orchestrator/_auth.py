"""Who is calling: API keys (bearer tokens), UI sessions, and the loopback-only local mode.

Every request but ``/health`` (and the UI's static files and signed approval pages, whose
token is their credential) names an API key. A key is checked against its stored hash on
every request; a verified key is cached for :data:`CACHE_SECONDS` so that a busy client
costs no database read per call. Revoking through the API forgets the key at once on this
orchestrator and, through ``NOTIFY polos_keys_v1``, on the others (PostgreSQL); a revocation
written straight into the database (``polos-server keys revoke``) is seen within
:data:`CACHE_SECONDS`. Worker sockets authenticated with a key that gets revoked are closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass

from polos._redact import redact, redact_text
from polos.protocol import StepRecord
from polos.storage import ADMIN, KeyRow, Store, parse_token, secret_matches

log = logging.getLogger("polos.orchestrator.auth")

CACHE_SECONDS = 1.0
"""How long a verified key is trusted without reading it again."""
TOUCH_SECONDS = 60.0
"""``last_used_at`` is written at most this often per key (it is a write)."""


@dataclass(frozen=True, slots=True)
class Caller:
    """The authenticated caller of one request or worker connection."""

    key_id: str | None
    """The API key's id; ``None`` in local mode."""
    name: str
    role: str
    """``admin`` (any project, manages projects and keys) or ``project``."""
    project_id: str | None
    """The one project a project key may touch; ``None`` for admins."""
    local: bool = False
    via_session: bool = False
    """Authenticated by the UI's session cookie (state changes then need the CSRF token)."""

    @property
    def is_admin(self) -> bool:
        """Whether the caller may act in any project and manage keys."""
        return self.role == ADMIN

    @property
    def identity(self) -> str:
        """How the caller is recorded (``key:<id> (<name>)``, or ``local``)."""
        return "local" if self.key_id is None else f"key:{self.key_id} ({self.name})"


LOCAL_CALLER = Caller(key_id=None, name="local", role=ADMIN, project_id=None, local=True)


def bearer_token(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (``None``: not that shape)."""
    scheme, _, token = (header or "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` serves this machine only."""
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Authenticator:
    """Checks API keys against the store, with a short cache."""

    def __init__(self, store: Store, *, local: bool = False) -> None:
        self.store = store
        self.local = local
        self._cache: dict[str, tuple[KeyRow, float]] = {}
        self._touched: dict[str, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def key(self, key_id: str) -> KeyRow | None:
        """A key's row, from the cache when it was read less than a second ago."""
        cached = self._cache.get(key_id)
        now = time.monotonic()
        if cached is not None and now - cached[1] < CACHE_SECONDS:
            return cached[0]
        row = await self.store.find_api_key(key_id)
        if row is None:
            self._cache.pop(key_id, None)
        else:
            self._cache[key_id] = (row, now)
        return row

    async def from_token(self, token: str) -> Caller | None:
        """The caller a bearer token stands for; ``None`` if it is malformed, unknown,
        revoked or wrong (the same answer for each: nothing to probe)."""
        parsed = parse_token(token)
        if parsed is None:
            return None
        key_id, secret = parsed
        row = await self.key(key_id)
        if row is None or row.info.revoked_at is not None or not secret_matches(row, secret):
            return None
        self._touch(key_id)
        return Caller(
            key_id=key_id, name=row.info.name, role=row.info.role, project_id=row.info.project_id
        )

    async def still_valid(self, key_id: str) -> bool:
        """Whether a key that authenticated earlier (a session, a socket) still works."""
        row = await self.key(key_id)
        return row is not None and row.info.revoked_at is None

    def forget(self, key_ids: Iterable[str]) -> None:
        """Drop keys from the cache (they were revoked)."""
        for key_id in key_ids:
            self._cache.pop(key_id, None)

    def _touch(self, key_id: str) -> None:
        now = time.monotonic()
        if now - self._touched.get(key_id, -TOUCH_SECONDS) < TOUCH_SECONDS:
            return
        self._touched[key_id] = now
        task = asyncio.create_task(self._write_touch(key_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _write_touch(self, key_id: str) -> None:
        try:
            await self.store.touch_api_key(key_id)
        except Exception as exc:  # a missed last-used time is not worth failing a request
            log.debug("could not record the use of key %s: %s", key_id, exc)

    async def close(self) -> None:
        """Let pending last-used writes finish."""
        for task in list(self._tasks):
            with contextlib.suppress(Exception):
                await task


def redact_steps_enabled() -> bool:
    """Whether step logs served to people are redacted (``POLOS_REDACT_STEPS``, default on)."""
    return os.environ.get("POLOS_REDACT_STEPS", "on").strip().lower() not in (
        "0",
        "off",
        "false",
        "no",
    )


def redact_step(step: StepRecord) -> StepRecord:
    """A step as shown to people and tools: secrets in its output and error redacted."""
    update: dict[str, object] = {"output": redact(step.output)}
    if step.error is not None:
        update["error"] = step.error.model_copy(
            update={
                "message": redact_text(step.error.message),
                "traceback": redact_text(step.error.traceback) if step.error.traceback else None,
            }
        )
    return step.model_copy(update=update)
