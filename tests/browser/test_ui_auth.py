"""The web UI on an orchestrator that requires API keys: sign-in, session cookie, CSRF.

Real headless Chromium against a real orchestrator started without ``--local`` and a real
worker authenticated with a project key.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import pytest_asyncio

from polos.storage import open_store
from polos.testing._processes import ServerProcess, WorkerProcess
from tests.browser.conftest import VIEWPORT, WAITS_WORKER, chromium_path

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.xdist_group("browser")]


class Secured:
    def __init__(self, server: ServerProcess, key: str, worker: WorkerProcess) -> None:
        self.server, self.key, self.worker = server, key, worker
        self.http = httpx.Client(
            base_url=server.url + "/api/v1", headers={"Authorization": f"Bearer {key}"}, timeout=30
        )


async def _key(url: str) -> str:
    store = await open_store(url)
    try:
        await store.ensure_project("default", "Default project")
        _, token = await store.create_api_key("default", "ui test")
        return token
    finally:
        await store.close()


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    if chromium_path() is None:
        pytest.skip("Chromium is missing (apt-get install chromium)")
    tmp = tmp_path_factory.mktemp("ui-auth")
    url = f"sqlite:///{tmp / 'polos.db'}"
    key = asyncio.run(_key(url))
    server = ServerProcess(url, local=False, log_path=tmp / "server.log").start()
    worker = WorkerProcess(
        WAITS_WORKER, api_url=server.url, env={"POLOS_API_KEY": key}, log_path=tmp / "worker.log"
    ).start()
    s = Secured(server, key, worker)
    try:
        for _ in range(400):
            items = s.http.get("/workers").json()["items"]
            if any(w["status"] == "connected" for w in items):
                break
            import time

            time.sleep(0.05)
        yield s
    finally:
        s.http.close()
        worker.stop(timeout=5)
        server.stop(timeout=5)


@pytest_asyncio.fixture(loop_scope="module")
async def tab(secured: Secured) -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(
            executable_path=chromium_path(), args=["--no-sandbox", "--disable-gpu"]
        )
        context = await browser.new_context(viewport=VIEWPORT, base_url=secured.server.url)
        page = await context.new_page()
        try:
            yield page
        finally:
            await browser.close()


async def test_ui__asks_for_a_key_then_works_through_its_session_with_csrf(
    secured: Secured, tab: Any
) -> None:
    waiting = secured.http.post("/workflows/approve/executions", json={"payload": {}}).json()["id"]
    await tab.goto("/")
    await tab.wait_for_selector("#api-key")
    await tab.fill("#api-key", "polos_0123456789abcdef_" + "x" * 43)
    await tab.click("#sign-in")
    await tab.wait_for_selector("text=not valid")

    await tab.fill("#api-key", secured.key)
    await tab.click("#sign-in")
    await tab.wait_for_selector(f"a[href='#/executions/{waiting}']")
    cookies = await tab.context.cookies()
    [session] = [c for c in cookies if c["name"] == "polos_session"]
    assert session["httpOnly"] and session["secure"] and session["sameSite"] == "Strict"
    assert secured.key not in session["value"]

    # A state change made with the cookie but without the CSRF token is refused...
    forged = await tab.evaluate(
        """async (id) => (await fetch(`/api/v1/executions/${id}/cancel`,
             {method: "POST", headers: {"Content-Type": "application/json"}, body: "{}"})).status""",
        waiting,
    )
    assert forged == 403
    assert secured.http.get(f"/executions/{waiting}").json()["status"] != "cancelled"
    # ...and the UI's own cancel (which sends it) works.
    await tab.goto(f"/#/executions/{waiting}")
    await tab.click("text=Cancel")
    confirm = tab.locator("button", has_text="Cancel execution")
    if await confirm.count():
        await confirm.first.click()
    for _ in range(100):
        if secured.http.get(f"/executions/{waiting}").json()["status"] == "cancelled":
            break
        await asyncio.sleep(0.1)
    assert secured.http.get(f"/executions/{waiting}").json()["status"] == "cancelled"

    # Signing out ends the session: the API answers 401 to the cookie-less page.
    await tab.click("#sign-out")
    await tab.wait_for_selector("#api-key")
    status = await tab.evaluate("async () => (await fetch('/api/v1/executions')).status")
    assert status == 401


async def test_ui__static_files_are_public_but_the_api_is_not(secured: Secured) -> None:
    with httpx.Client(base_url=secured.server.url) as plain:
        assert plain.get("/").status_code == 200
        assert plain.get("/api/v1/executions").status_code == 401
        assert plain.get("/ui/session").status_code == 401
        assert plain.post("/ui/session", json={"api_key": "nope"}).status_code == 401
