"""Orchestrator settings, from arguments or ``POLOS_*`` environment variables."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field

from polos.protocol._limits import SizeLimits  # limits

from ._retention import RetentionSettings  # retention


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
        limits: largest payload, event data and step output (``POLOS_MAX_*_BYTES``, 413).
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
    limits: SizeLimits = field(default_factory=SizeLimits)  # limits
    local: bool = False
    """Local mode: no API keys; only allowed on a loopback address (``--local``)."""
    retention: RetentionSettings | None = None  # retention: None keeps everything forever

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
            "limits": SizeLimits.from_env(),  # limits: POLOS_MAX_{PAYLOAD,EVENT,STEP_OUTPUT}_BYTES
            "local": os.environ.get("POLOS_LOCAL", "").strip().lower() in ("1", "true", "yes"),
            "retention": RetentionSettings.from_env(),  # retention: POLOS_RETENTION_*
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]
