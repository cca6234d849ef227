"""The Python client of the orchestrator API."""

from ._client import DEFAULT_API_URL, ExecutionHandle, PolosClient

__all__ = ["DEFAULT_API_URL", "ExecutionHandle", "PolosClient"]
