"""PostgreSQL LISTEN: how one orchestrator hears what the others did.

Notifications are sent inside write transactions (see ``_writes.notify``), so they
arrive only once the change is committed. They are a latency optimisation, never
the only path: every replica also polls slowly, so a notification lost while the
listening connection was down delays work by at most a poll interval.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Mapping, Sequence

log = logging.getLogger("polos.storage")

_MAX_REASON = 300


def cancel_items(targets: Sequence[tuple[str, str, str]]) -> list[str]:
    """NOTIFY items for the cancel channel: one JSON ``[worker, execution, reason]`` each."""
    return [json.dumps([w, e, reason[:_MAX_REASON]]) for w, e, reason in targets]


def cancel_targets(payload: str) -> list[tuple[str, str, str]]:
    """Parse a cancel-channel payload: (worker id, execution id, reason) items.

    Also reads the older ``worker_id execution_id`` form (one item, no reason).
    """
    if not payload.startswith("["):
        worker_id, _, execution_id = payload.partition(" ")
        return [(worker_id, execution_id, "cancelled")] if execution_id else []
    try:
        items = json.loads(f"[{payload}]")
    except ValueError:
        log.warning("ignoring a malformed cancel notification: %.200s", payload)
        return []
    return [
        (str(item[0]), str(item[1]), str(item[2]))
        for item in items
        if isinstance(item, list) and len(item) == 3
    ]


def libpq_url(sqlalchemy_url: str) -> str:
    """``postgresql+psycopg://...`` → ``postgresql://...`` (what psycopg.connect wants)."""
    return "postgresql://" + sqlalchemy_url.split("://", 1)[1]


async def listen_forever(
    url: str,
    handlers: Mapping[str, Callable[[str], None]],
    on_connect: Callable[[], None],
) -> None:
    """LISTEN on every channel of ``handlers`` and dispatch payloads, reconnecting for ever.

    ``on_connect`` runs after each (re)connection: notifications sent while the
    connection was down are lost, so callers should re-check their state then.
    """
    import psycopg
    from psycopg import sql

    delay = 0.5
    while True:
        try:
            conn = await psycopg.AsyncConnection.connect(libpq_url(url), autocommit=True)
            async with conn:
                for channel in handlers:
                    # limits: an identifier cannot be a bound parameter: quote it as one.
                    await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                delay = 0.5
                on_connect()
                async for notification in conn.notifies():
                    handler = handlers.get(notification.channel)
                    if handler is not None:
                        try:
                            handler(notification.payload)
                        except Exception:  # a bad handler must not stop the listener
                            log.exception("handling a %s notification failed", notification.channel)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("listening for changes failed (%s); retrying in %.1f s", exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
