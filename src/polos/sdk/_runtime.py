"""The contract between the SDK (code inside workflows) and the worker that runs it.

The SDK never talks to the network itself: it asks its :class:`StepRecorder`
to make a step record durable. The worker implements it over its channel to
the orchestrator (Temporal's runtime pattern), tests implement it in memory.
"""

from __future__ import annotations

from typing import Protocol

from polos.protocol import StepRecord


class LeaseLost(BaseException):
    """This worker no longer owns the execution; stop running it at once.

    A ``BaseException`` so that user code's ``except Exception`` cannot keep a
    fenced-off execution running.
    """


class StepRecorder(Protocol):
    """Makes step records durable for one execution attempt."""

    async def record(self, records: list[StepRecord]) -> None:
        """Return once every record is durable; raise :class:`LeaseLost` if fenced."""
