"""Helpers for testing workflows: run or replay one attempt in memory, no orchestrator needed."""

from ._memory import MemoryRecorder, replay, run_once

__all__ = ["MemoryRecorder", "replay", "run_once"]
