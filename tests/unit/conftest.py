"""Fixtures for the in-memory unit tests (no network, no database, no subprocesses)."""

from __future__ import annotations

import pytest


class FakeSleep:
    """An injectable replacement for ``asyncio.sleep`` that only records the delays."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@pytest.fixture
def fake_sleep() -> FakeSleep:
    """A sleep function that returns at once and remembers what it was asked to wait."""
    return FakeSleep()
