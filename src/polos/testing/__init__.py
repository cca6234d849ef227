"""Helpers for testing: in-memory replay of workflows, and real orchestrator/worker processes."""

from polos.llm import ScriptedProvider, ScriptedReply

from ._fake_llm import FakeLLMServer, FakeReply, FakeRequest
from ._memory import MemoryRecorder, replay, run_once
from ._offline import fake_llm_unless_key
from ._processes import ServerProcess, WorkerProcess, free_port, wait_for_workers

__all__ = [
    "FakeLLMServer",
    "FakeReply",
    "FakeRequest",
    "MemoryRecorder",
    "ScriptedProvider",
    "ScriptedReply",
    "ServerProcess",
    "WorkerProcess",
    "fake_llm_unless_key",
    "free_port",
    "replay",
    "run_once",
    "wait_for_workers",
]
