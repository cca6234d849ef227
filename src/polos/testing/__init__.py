"""Helpers for testing: in-memory replay of workflows, and real orchestrator/worker processes."""

from ._memory import MemoryRecorder, replay, run_once
from ._processes import ServerProcess, WorkerProcess, free_port, wait_for_workers

__all__ = [
    "MemoryRecorder",
    "ServerProcess",
    "WorkerProcess",
    "free_port",
    "replay",
    "run_once",
    "wait_for_workers",
]
