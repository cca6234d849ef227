"""The orchestrator: owns all state, serves the API, the worker channel and the UI. Never runs user code."""

from ._app import create_app
from ._auth import Authenticator, Caller, is_loopback
from ._gateway import Gateway, WorkerSession
from ._runtime import OrchestratorRuntime
from ._settings import OrchestratorSettings

__all__ = [
    "Authenticator",
    "Caller",
    "Gateway",
    "OrchestratorRuntime",
    "OrchestratorSettings",
    "WorkerSession",
    "create_app",
    "is_loopback",
]
