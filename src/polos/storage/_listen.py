"""PostgreSQL LISTEN: how one orchestrator hears what the others did.

Notifications are sent inside write transactions (see ``_writes.notify``), so they
arrive only once the change is committed. They are a latency optimisation, never
the only path: every replica also polls slowly, so a notification lost while the
listening connection was down delays work by at most a poll interval.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping

log = logging.getLogger("polos.storage")


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

    delay = 0.5
    while True:
        try:
            conn = await psycopg.AsyncConnection.connect(libpq_url(url), autocommit=True)
            async with conn:
                for channel in handlers:
                    await conn.execute(f"LISTEN {channel}")
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
