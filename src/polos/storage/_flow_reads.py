"""Reads of flow-control state: queues with their counts, rate limits with their usage."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from polos.protocol import QueueInfo, QueueKeyInfo, QueueList, RateLimitInfo

from . import _tables as t

MAX_KEYS_SHOWN = 100
"""Concurrency keys listed per queue (the busiest first)."""

_COUNTS = sa.text(
    "SELECT queue, status, available_at <= :now AS due, count(*) AS n FROM executions "
    "WHERE project_id = :p AND queue IS NOT NULL AND status IN ('queued', 'running', 'waiting') "
    "GROUP BY queue, status, available_at <= :now"
)
_KEYS = sa.text(
    "SELECT queue, concurrency_key, status, count(*) AS n FROM executions "
    "WHERE project_id = :p AND queue IS NOT NULL AND concurrency_key IS NOT NULL "
    "AND status IN ('queued', 'running') GROUP BY queue, concurrency_key, status"
)
_USAGE = sa.text(
    "SELECT l.name, l.max_units, l.period_ms, COALESCE(SUM(u.units), 0) AS used, "
    "COUNT(DISTINCT u.key) AS keys FROM rate_limits l LEFT JOIN rate_usage u "
    "ON u.project_id = l.project_id AND u.name = l.name AND u.at > :now - l.period_ms "
    "WHERE l.project_id = :p GROUP BY l.name, l.max_units, l.period_ms ORDER BY l.name"
)


def list_queues(conn: Connection, project_id: str, now: int) -> QueueList:
    """Every queue of a project with its limits and counts, and every rate limit's usage."""
    params = {"p": project_id, "now": now}
    counts: dict[str, dict[str, int]] = {}
    for row in conn.execute(_COUNTS, params).all():
        slot = counts.setdefault(row.queue, {"running": 0, "queued": 0, "delayed": 0, "waiting": 0})
        if row.status == "queued":
            slot["queued" if row.due else "delayed"] += int(row.n)
        else:
            slot[row.status] += int(row.n)
    keys: dict[str, dict[str, dict[str, int]]] = {}
    for row in conn.execute(_KEYS, {"p": project_id}).all():
        per_key = keys.setdefault(row.queue, {}).setdefault(
            row.concurrency_key, {"running": 0, "queued": 0}
        )
        per_key[row.status] += int(row.n)
    q = t.queues
    declared: dict[str, Any] = {
        r["name"]: r
        for r in conn.execute(sa.select(q).where(q.c.project_id == project_id)).mappings().all()
    }
    items = []
    for name in sorted(set(declared) | set(counts)):
        decl = declared.get(name)
        c = counts.get(name, {"running": 0, "queued": 0, "delayed": 0, "waiting": 0})
        busiest = sorted(
            keys.get(name, {}).items(), key=lambda kv: (-kv[1]["running"], -kv[1]["queued"], kv[0])
        )[:MAX_KEYS_SHOWN]
        blocked = decl["rate_blocked_until"] if decl is not None else None
        items.append(
            QueueInfo(
                name=name,
                concurrency_limit=decl["concurrency_limit"] if decl is not None else None,
                per_key_limit=decl["per_key_limit"] if decl is not None else None,
                rate_limit=decl["rate_limit"] if decl is not None else None,
                per_key_rate_limit=decl["per_key_rate_limit"] if decl is not None else None,
                rate_blocked_until=blocked if blocked is not None and blocked > now else None,
                keys=[QueueKeyInfo(key=k, **v) for k, v in busiest],
                **c,
            )
        )
    limits = [
        RateLimitInfo(
            name=r.name, limit=r.max_units, period_ms=r.period_ms, used=int(r.used), keys=r.keys
        )
        for r in conn.execute(_USAGE, params).all()
    ]
    return QueueList(items=items, rate_limits=limits)
