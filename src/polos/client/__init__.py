"""The Python client of the orchestrator API."""

from ._base import ExecutionHandle
from ._client import PolosClient
from ._events import EventsClient
from ._schedules import SchedulesClient
from ._transport import DEFAULT_API_URL

__all__ = ["DEFAULT_API_URL", "EventsClient", "ExecutionHandle", "PolosClient", "SchedulesClient"]
