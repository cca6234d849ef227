"""Everything one orchestrator process holds: store, batcher, gateway, waiters."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from polos.protocol import DEFAULT_PROJECT_ID
from polos.storage import Store, Transition, WriteBatcher, open_store

from ._gateway import Gateway
from ._settings import OrchestratorSettings
from ._waiters import Waiters

log = logging.getLogger("polos.orchestrator")


class OrchestratorRuntime:
    """The live state of an orchestrator, built by :meth:`start` and torn down by :meth:`stop`."""

    def __init__(self, settings: OrchestratorSettings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self.waiters = Waiters()
        self.batcher = WriteBatcher(store, on_transitions=self._on_transitions)
        self.gateway = Gateway(store, self.batcher, settings)
        self._projects: set[str] = set()

    @classmethod
    async def open(cls, settings: OrchestratorSettings) -> OrchestratorRuntime:
        """Connect to (and migrate) the database, create the default project, start loops."""
        store = await open_store(settings.database_url)
        runtime = cls(settings, store)
        await store.ensure_project(DEFAULT_PROJECT_ID, "Default project")
        runtime.batcher.start()
        await runtime.gateway.start()
        return runtime

    async def close(self) -> None:
        """Stop loops, flush writes, close the database."""
        await self.gateway.stop()
        await self.batcher.stop()
        log.info("orchestrator stopping: %s", self.batcher.describe())
        await self.store.close()

    def _on_transitions(self, transitions: Sequence[Transition]) -> None:
        self.waiters.notify(transitions)
        self.gateway.on_transitions(transitions)

    async def project_exists(self, project_id: str) -> bool:
        """Whether the project exists (positive answers are cached)."""
        if project_id in self._projects:
            return True
        if await self.store.project_exists(project_id):
            self._projects.add(project_id)
            return True
        return False
