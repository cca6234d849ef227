"""The worker process: connects out to the orchestrator, claims tasks, replays and runs workflows."""

from ._channel import Channel, FatalChannelError
from ._worker import Worker

__all__ = ["Channel", "FatalChannelError", "Worker"]
