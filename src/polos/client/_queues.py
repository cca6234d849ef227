"""``client.queues``: queue state (limits, running and waiting counts) and rate limits."""

from __future__ import annotations

import builtins
from datetime import timedelta
from typing import TYPE_CHECKING
from urllib.parse import quote

from polos.errors import ConfigurationError
from polos.protocol import QueueInfo, QueueList, RateLimitInfo

if TYPE_CHECKING:
    from ._client import PolosClient


class QueuesClient:
    """Flow-control state of a project (``client.queues``)."""

    def __init__(self, client: PolosClient) -> None:
        self.client = client

    async def list(self) -> QueueList:
        """Every queue (limits, running / queued / delayed / waiting, busiest keys) and every
        rate limit with the units used in its current window."""
        return QueueList.model_validate(await self.client._request("GET", "/queues"))

    async def get(self, name: str) -> QueueInfo:
        """One queue.

        Raises:
            ApiError: no such queue (404).
        """
        data = await self.client._request("GET", f"/queues/{quote(name, safe='')}")
        return QueueInfo.model_validate(data)

    async def set_rate_limit(
        self, name: str, limit: int, period: timedelta | float = timedelta(minutes=1)
    ) -> RateLimitInfo:
        """Define or change the rate limit ``name``: ``limit`` units per sliding ``period``."""
        seconds = period.total_seconds() if isinstance(period, timedelta) else float(period)
        if seconds <= 0:
            raise ConfigurationError(f"period must be positive, not {period!r}")
        data = await self.client._request(
            "PUT",
            f"/rate-limits/{quote(name, safe='')}",
            json={"limit": limit, "period_seconds": seconds},
        )
        return RateLimitInfo.model_validate(data)

    async def rate_limits(self) -> builtins.list[RateLimitInfo]:
        """Every rate limit of the project with its current usage."""
        return (await self.list()).rate_limits

    # ------------------------------------------------------------------ blocking twins

    def list_sync(self) -> QueueList:
        """Blocking :meth:`list`."""
        result: QueueList = self.client._portal.run(
            self.client._in_portal(lambda c: c.queues.list())
        )
        return result

    def get_sync(self, name: str) -> QueueInfo:
        """Blocking :meth:`get`."""
        result: QueueInfo = self.client._portal.run(
            self.client._in_portal(lambda c: c.queues.get(name))
        )
        return result

    def set_rate_limit_sync(
        self, name: str, limit: int, period: timedelta | float = timedelta(minutes=1)
    ) -> RateLimitInfo:
        """Blocking :meth:`set_rate_limit`."""
        result: RateLimitInfo = self.client._portal.run(
            self.client._in_portal(lambda c: c.queues.set_rate_limit(name, limit, period))
        )
        return result
