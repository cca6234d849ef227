"""The Python client of the orchestrator API."""

from ._base import ExecutionHandle
from ._client import DEFAULT_API_URL, PolosClient
from ._events import EventsClient
from ._schedules import SchedulesClient

__all__ = ["DEFAULT_API_URL", "EventsClient", "ExecutionHandle", "PolosClient", "SchedulesClient"]
