"""Orchestrator settings, from arguments or ``POLOS_*`` environment variables."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw else default


@dataclass(frozen=True, slots=True)
class OrchestratorSettings:
    """How one orchestrator process runs.

    Attributes:
        database_url: ``sqlite:///path.db`` (default ``~/.polos/polos.db``) or ``postgresql://...``.
        host: interface to bind.
        port: TCP port to bind.
        heartbeat_ms: how often workers must show signs of life.
        lease_ms: how long a silent worker keeps its executions before they are requeued.
        max_body_bytes: largest accepted request body (413 above it).
        orchestrator_id: this orchestrator's identity among replicas; stable across restarts
            (default ``host:port``) so that a restarted replica gives only its own former
            workers a lease of grace. Set ``POLOS_ORCHESTRATOR_ID`` when host:port is not unique.
    """

    database_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    heartbeat_ms: int = 1000
    lease_ms: int = 5000
    max_body_bytes: int = 10 * 1024 * 1024
    orchestrator_id: str = ""

    def __post_init__(self) -> None:
        if not self.orchestrator_id:
            object.__setattr__(self, "orchestrator_id", f"{socket.gethostname()}:{self.port}")

    @classmethod
    def from_env(cls, **overrides: object) -> OrchestratorSettings:
        """Settings from ``POLOS_DATABASE_URL``, ``POLOS_HEARTBEAT_MS``, ``POLOS_LEASE_MS``,
        ``POLOS_MAX_BODY_BYTES``, with explicit ``overrides`` (``None`` values ignored) winning."""
        values: dict[str, object] = {
            "database_url": os.environ.get("POLOS_DATABASE_URL") or None,
            "heartbeat_ms": _env_int("POLOS_HEARTBEAT_MS", 1000),
            "lease_ms": _env_int("POLOS_LEASE_MS", 5000),
            "max_body_bytes": _env_int("POLOS_MAX_BODY_BYTES", 10 * 1024 * 1024),
            "orchestrator_id": os.environ.get("POLOS_ORCHESTRATOR_ID", ""),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]
