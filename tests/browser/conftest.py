"""Fixtures of the browser tests: one orchestrator (SQLite), real workers, a fake model and
one headless Chromium, shared by the whole module (starting them is most of the cost).

Chromium is Debian's (``/usr/bin/chromium``, or ``POLOS_TEST_CHROMIUM``) driven by
Playwright; the tests are skipped when it is missing, unless ``CI=true``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from polos.testing import FakeLLMServer, FakeReply, FakeRequest
from polos.testing._processes import ServerProcess, WorkerProcess, wait_for_workers

HERE = Path(__file__).parent
REPO = HERE.parent.parent
UI_WORKER = HERE / "ui_worker.py"
WAITS_WORKER = REPO / "tests" / "integration" / "workers" / "waits_worker.py"
SCREENSHOTS = REPO / "docs" / "images"
VIEWPORT = {"width": 1280, "height": 860}


def chromium_path() -> str | None:
    """Debian's Chromium (Playwright drives it; its own browsers are never downloaded)."""
    for candidate in (os.environ.get("POLOS_TEST_CHROMIUM"), "/usr/bin/chromium"):
        if candidate and Path(candidate).exists():
            return candidate
    return shutil.which("chromium")


def _fake_model(request: FakeRequest) -> FakeReply:
    """The support agent's model: look the order up, then answer."""
    if request.tool_results == 0:
        return FakeReply(
            tool_calls=[("lookup_order", {"order_id": "A-1042"})],
            reasoning="The user asks where order A-1042 is. I should look it up first.",
            usage=(412, 38),
        )
    return FakeReply(
        "Order A-1042 has shipped with UPS and arrives tomorrow.",
        reasoning="The tool says shipped via UPS, ETA tomorrow. Answer briefly.",
        usage=(538, 27),
    )


class Stack:
    """The orchestrator and workers of the module, and a small JSON API client."""

    def __init__(self, server: ServerProcess, workers: list[WorkerProcess]) -> None:
        self.server = server
        self.workers = workers
        self.url = server.url
        self.http = httpx.Client(base_url=server.url + "/api/v1", timeout=30)

    def get(self, path: str, **params: Any) -> Any:
        response = self.http.get(path, params=params)
        response.raise_for_status()
        return response.json()

    def post(self, path: str, body: Any = None) -> Any:
        response = self.http.post(path, json=body)
        assert response.status_code < 300, response.text
        return response.json()

    def invoke(self, workflow_id: str, payload: Any = None) -> str:
        execution_id: str = self.post(f"/workflows/{workflow_id}/executions", {"payload": payload})[
            "id"
        ]
        return execution_id

    def result(self, execution_id: str, timeout: float = 30) -> Any:
        response = self.http.get(
            f"/executions/{execution_id}/result", params={"timeout": timeout}, timeout=timeout + 5
        )
        response.raise_for_status()
        return response.json()

    def output(self) -> str:
        parts = [f"===== server =====\n{self.server.output()[-4000:]}"]
        parts += [f"===== {w.log_path} =====\n{w.output()[-4000:]}" for w in self.workers]
        return "\n".join(parts)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if chromium_path() is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("Chromium is missing (apt-get install chromium)")
        pytest.skip("Chromium is missing (apt-get install chromium)")
    tmp = tmp_path_factory.mktemp("ui")
    server = ServerProcess(f"sqlite:///{tmp / 'polos.db'}", log_path=tmp / "server.log").start()
    fake = FakeLLMServer()
    fake.respond_with(_fake_model)
    fake.start()
    workers: list[WorkerProcess] = []
    stack = Stack(server, workers)
    try:
        env = {"FAKE_LLM_URL": fake.url, "OPENAI_API_KEY": "test-key"}
        for script in (UI_WORKER, WAITS_WORKER):
            workers.append(
                WorkerProcess(
                    script, api_url=server.url, env=env, log_path=tmp / f"{script.stem}.log"
                ).start()
            )
        wait_for_workers(server.url, len(workers), timeout=30)
        yield stack
    finally:
        stack.http.close()
        for w in workers:
            w.stop(timeout=5)
        server.stop(timeout=5)
        fake.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser(stack: Stack) -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        chromium = await p.chromium.launch(
            executable_path=chromium_path(), args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest_asyncio.fixture(loop_scope="module")
async def page(browser: Any, stack: Stack, request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """A fresh page at 1280 px; JavaScript errors on it fail the test."""
    context = await browser.new_context(viewport=VIEWPORT, base_url=stack.url)
    tab = await context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
    tab.on(
        "console",
        lambda msg: (
            errors.append(f"console {msg.type}: {msg.text}") if msg.type == "error" else None
        ),
    )
    try:
        yield tab
    finally:
        await context.close()
    failed = getattr(getattr(request.node, "rep_call", None), "failed", False)
    if failed:
        print(stack.output())
    assert not errors, "\n".join(errors)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
