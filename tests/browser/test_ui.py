"""The web UI in a real browser (headless Chromium) against a real orchestrator and workers.

The tests share one orchestrator, its workers and one browser (module scope), so each
test starts its own executions and looks only at those. They also take the screenshots
of ``docs/images/`` that ``docs/ui.md`` shows, so the docs stay true.
"""

from __future__ import annotations

import re
import time
from typing import Any

import httpx
import pytest

from tests.browser.conftest import SCREENSHOTS, Stack

# One xdist worker runs the whole module: one server, one set of workers, one browser.
pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.xdist_group("browser")]

Page = Any  # playwright.async_api.Page (imported lazily: the module must import without it)


def wait_for(condition: Any, timeout: float = 20.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def waiting_at(stack: Stack, execution_id: str, step: str) -> bool:
    waits = stack.get("/waits", kind="suspend", limit=500)["items"]
    return any(w["execution_id"] == execution_id and w["step_key"] == step for w in waits)


async def shot(page: Page, name: str, *, full_page: bool = False) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.wait_for_timeout(150)  # let the last paint settle (no animation mid-frame)
    await page.screenshot(path=str(SCREENSHOTS / name), full_page=full_page)


# ---------------------------------------------------------------------- serving


async def test_serving__index_static_files_and_openapi_docs(stack: Stack) -> None:
    index = httpx.get(stack.url + "/")
    assert index.status_code == 200 and "text/html" in index.headers["content-type"]
    assert '<script type="module" src="/ui/static/app.js">' in index.text
    assert "Content-Security-Policy" in index.headers
    script = httpx.get(stack.url + "/ui/static/app.js")
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    again = httpx.get(
        stack.url + "/ui/static/app.js", headers={"If-None-Match": script.headers["etag"]}
    )
    assert again.status_code == 304
    assert (
        httpx.get(stack.url + "/ui/static/app.css").headers["content-type"].startswith("text/css")
    )
    missing = httpx.get(stack.url + "/ui/static/..%2F_ui.py")
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"
    assert httpx.get(stack.url + "/docs").status_code == 200
    assert httpx.get(stack.url + "/api/v1/openapi.json").status_code == 200


# ---------------------------------------------------------------------- executions list


async def test_executions_list__shows_real_executions_live_and_filters_work(
    page: Page, stack: Stack
) -> None:
    pipeline = stack.invoke("order_pipeline", {"id": "A-1042", "amount": 120.5, "items": ["lamp"]})
    failing = stack.invoke("always_fails", {})
    sleeper = stack.invoke("long_sleep", {})
    stack.post("/workflows/support_agent/executions", {"payload": {"input": "Where is A-1042?"}})
    refund = stack.invoke("refund_request", {"customer": "Ada Lovelace", "amount": 89.9})
    stack.invoke("fan_out", [1, 2, 3])
    for execution_id in (pipeline, failing):
        stack.result(execution_id)

    await page.goto("/")
    rows = page.locator("#exec-rows tr[data-id]")
    for execution_id in (pipeline, failing, sleeper, refund):
        await page.locator(f'#exec-rows tr[data-id="{execution_id}"]').wait_for()
    assert await page.locator(f'tr[data-id="{failing}"] .badge').inner_text() == "failed"
    # Live: the sleeper goes from queued/running to waiting without a reload.
    await page.locator(f'tr[data-id="{sleeper}"][data-status="waiting"]').wait_for(timeout=10_000)
    # Children are hidden with "top-level only" (the default).
    assert "double" not in await page.locator("#exec-rows").inner_text()
    await page.wait_for_timeout(600)  # the agent and fan_out finish
    await shot(page, "ui-executions.png")

    # Status filter (multi): failed only.
    await page.click('.chip[data-status="failed"]')
    await page.wait_for_function(
        "() => [...document.querySelectorAll('#exec-rows tr[data-id]')]"
        ".every(r => r.dataset.status === 'failed') && "
        "document.querySelectorAll('#exec-rows tr[data-id]').length > 0"
    )
    assert "status=failed" in page.url
    await page.click('.chip[data-status="waiting"]')
    await page.locator(f'tr[data-id="{sleeper}"]').wait_for()
    statuses = set(await rows.evaluate_all("rs => rs.map(r => r.dataset.status)"))
    assert statuses <= {"failed", "waiting"} and len(statuses) == 2

    # Workflow filter.
    await page.click(".filter-row .btn-link")  # clear filters
    await page.locator(f'tr[data-id="{pipeline}"]').wait_for()
    await page.select_option("#f-workflow", "order_pipeline")
    await page.wait_for_function(
        "() => [...document.querySelectorAll('#exec-rows tr[data-id]')].every("
        "r => r.innerText.includes('order_pipeline'))"
    )

    # Search by id prefix, across workflows.
    await page.select_option("#f-workflow", "")
    await page.fill("#f-q", refund[:18])
    await page.wait_for_function(
        f"() => {{ const rs = document.querySelectorAll('#exec-rows tr[data-id]');"
        f" return rs.length === 1 && rs[0].dataset.id === '{refund}'; }}"
    )
    # The children show when "top-level only" is off.
    await page.fill("#f-q", "")
    await page.uncheck("#f-top")
    await page.wait_for_function(
        "() => document.querySelector('#exec-rows').innerText.includes('double')"
    )

    # Keyset pagination: a page of 50 with Next / Newer.
    stack.post(
        "/executions/batch",
        {"items": [{"workflow_id": "double", "payload": i} for i in range(55)]},
    )
    await page.check("#f-top")
    await page.uncheck("#f-top")
    await page.locator("#page-next:not([disabled])").wait_for()
    first = await rows.first.get_attribute("data-id")
    await page.click("#page-next")
    await page.wait_for_function(
        f"() => document.querySelector('#exec-rows tr[data-id]')?.dataset.id !== '{first}'"
    )
    assert await page.locator("#page-newer").is_enabled()
    await page.click("#page-newer")
    await page.wait_for_function(
        f"() => document.querySelector('#exec-rows tr[data-id]')?.dataset.id === '{first}'"
    )
    for unfinished in (sleeper, refund):
        stack.post(f"/executions/{unfinished}/cancel", {"reason": "test over"})


# ---------------------------------------------------------------------- one execution


async def test_execution_page__timeline_of_steps_children_and_a_steps_output(
    page: Page, stack: Stack
) -> None:
    execution_id = stack.invoke(
        "order_pipeline", {"id": "A-1042", "amount": 120.5, "items": ["lamp", "desk"]}
    )
    assert stack.result(execution_id)["status"] == "completed"
    await page.goto(f"/#/executions/{execution_id}")
    gantt = page.locator(".gantt")
    await gantt.wait_for()
    keys = await page.locator(".g-step").evaluate_all("rs => rs.map(r => r.dataset.key)")
    assert keys == [
        "validate",
        "request_id",
        "check_inventory",
        "quote",
        "cool_off",
        "announce",
        "send_receipt",
    ]
    kinds = await page.locator(".g-step").evaluate_all("rs => rs.map(r => r.dataset.kind)")
    assert kinds[3:6] == ["invoke_wait", "sleep", "publish"]
    # The child execution is a bar under the step that started it, linking to it.
    child = page.locator(".g-child")
    assert await child.count() == 1 and "price_quote" in await child.inner_text()

    await page.click('.g-step[data-key="check_inventory"]')
    panel = page.locator("#step-panel")
    await panel.wait_for()
    text = await panel.inner_text()
    assert "check_inventory" in text and '"lamp": "in stock"' in text and "Duration" in text
    await shot(page, "ui-execution.png")

    await child.click()
    await page.wait_for_url(re.compile(r"#/executions/[0-9a-f-]+$"))
    await page.locator('.g-step[data-key="base_price"]').wait_for()
    # The child's page links back to its parent, at the step that started it.
    assert await page.locator(f'.summary a[href="#/executions/{execution_id}"]').count() == 1
    assert "at quote" in await page.locator(".summary").inner_text()


async def test_execution_page__200_steps_render_quickly(page: Page, stack: Stack) -> None:
    execution_id = stack.invoke("many_steps", {"count": 200})
    assert stack.result(execution_id)["status"] == "completed"
    await page.goto(f"/#/executions/{execution_id}")
    await page.locator(".g-step").first.wait_for()
    assert await page.locator(".g-step").count() == 200
    # Redrawing the timeline of 200 steps (what a refresh does) stays well under a frame budget.
    elapsed = await page.evaluate(
        """() => {
            const t0 = performance.now();
            for (let i = 0; i < 5; i++) document.querySelector('.tab[data-tab="timeline"]').click();
            document.body.offsetHeight;  // force layout
            return (performance.now() - t0) / 5;
        }"""
    )
    assert elapsed < 150, f"one redraw of 200 steps took {elapsed:.0f} ms"
    await page.click('.g-step[data-key="step_199"]')
    assert "199" in await page.locator("#step-panel").inner_text()


async def test_cancel_and_retry_from_the_execution_page(page: Page, stack: Stack) -> None:
    execution_id = stack.invoke("long_sleep", {})
    wait_for(
        lambda: stack.get(f"/executions/{execution_id}")["status"] == "waiting", what="the sleep"
    )
    await page.goto(f"/#/executions/{execution_id}")
    await page.click("#cancel-btn")
    await page.fill("#cancel-reason", "not needed any more")
    await page.click("#cancel-confirm")
    await page.locator(".page-header .badge.st-cancelled").wait_for()
    execution = stack.get(f"/executions/{execution_id}")
    assert execution["status"] == "cancelled"
    assert execution["cancelled_by"] == "ui: not needed any more"
    assert await page.locator("#cancel-btn").count() == 0

    # Retry: it runs again from where it stopped (back to its hour-long sleep).
    await page.click("#retry-btn")
    await page.locator(".page-header .badge.st-waiting").wait_for(timeout=10_000)
    retried = stack.get(f"/executions/{execution_id}")
    assert [a["outcome"] for a in retried["attempts"]][-1] == "retried"
    assert "ui" in retried["attempts"][-1]["error"]["message"]
    stack.post(f"/executions/{execution_id}/cancel", {"reason": "test over"})


# ---------------------------------------------------------------------- approvals


async def test_approvals__approving_from_the_inbox_resumes_the_workflow_to_completion(
    page: Page, stack: Stack
) -> None:
    order_id = f"B-{time.time_ns() % 100_000}"
    published = stack.post(
        "/events",
        {"topic": "order/new", "data": {"id": order_id, "amount": 2400, "items": ["piano"]}},
    )
    (execution_id,) = published["triggered"]
    refund = stack.invoke("refund_request", {"customer": "Ada Lovelace", "amount": 89.9})
    wait_for(lambda: waiting_at(stack, execution_id, "approval"), what="the approval wait")
    wait_for(lambda: waiting_at(stack, refund, "review"), what="the refund review")

    await page.goto("/")
    await page.fill("#user", "alice")
    await page.press("#user", "Tab")
    await page.click('a[data-nav="approvals"]')
    card = page.locator(f'.approval[data-execution="{execution_id}"]')
    await card.wait_for()
    # No form declared: the data as a table, with Approve / Reject.
    assert "piano" in await card.locator("table.kv").inner_text()
    await page.locator(f'.approval[data-execution="{refund}"] .form-title').wait_for()
    await shot(page, "ui-approvals.png")

    await card.locator("textarea.comment").fill("within budget")
    await card.locator("button.approve").click()
    await card.wait_for(state="detached")
    # It is resumed: it charges, then waits for the pickup event; publish it.
    wait_for(
        lambda: any(
            w["execution_id"] == execution_id and w["step_key"] == "wait_pickup"
            for w in stack.get("/waits", kind="event", limit=500)["items"]
        ),
        what="the workflow to go past the approval, to the pickup wait",
    )
    stack.post("/events", {"topic": f"warehouse.pickup/{order_id}", "data": {"ok": True}})
    done = stack.result(execution_id)
    assert done["status"] == "completed"
    assert done["result"]["status"] == "completed" and done["result"]["payment_id"]
    steps = {s["key"]: s for s in stack.get(f"/executions/{execution_id}/steps")["items"]}
    assert steps["approval"]["output"]["data"] == {"approved": True, "comment": "within budget"}

    # The audit trail on the execution page: who, when, what.
    await page.goto(f"/#/executions/{execution_id}")
    audit = page.locator('.audit-card .audit-resume[data-key="approval"]')
    await audit.wait_for()
    text = await audit.inner_text()
    assert "approved" in text and "alice" in text and "within budget" in text

    # The declared form: required fields are checked, then the values are sent.
    await page.goto("/#/approvals")
    form_card = page.locator(f'.approval[data-execution="{refund}"]')
    await form_card.locator("button.submit").click()
    assert "required" in await form_card.locator(".form-error").inner_text()
    await form_card.locator(".yesno label.yes input").check()
    await form_card.locator('input[data-field="amount"]').fill("50")
    await form_card.locator('select[data-field="reason"]').select_option(label="damaged")
    await form_card.locator('textarea[data-field="note"]').fill("Sorry about that.")
    await form_card.locator("button.submit").click()
    await form_card.wait_for(state="detached")
    result = stack.result(refund)
    assert result["status"] == "completed"
    assert result["result"]["decision"] == {
        "approved": True,
        "amount": 50,
        "reason": "damaged",
        "note": "Sorry about that.",
    }


# ---------------------------------------------------------------------- events


async def test_events_page__shows_a_published_event_live(page: Page, stack: Stack) -> None:
    topic = f"shipments/{time.time_ns() % 10_000}"
    await page.goto(f"/#/events?topic={topic}")
    await page.locator("#stream-state.on").wait_for()
    stack.post("/events", {"topic": topic, "data": {"order": "A-1042", "status": "packed"}})
    stack.post("/events", {"topic": topic, "data": {"order": "A-1042", "status": "shipped"}})
    await page.locator('#event-rows tr[data-seq="2"]').wait_for()
    assert "shipped" in await page.locator('#event-rows tr[data-seq="2"]').inner_text()
    # Publishing from the page shows up in the tail too.
    await page.fill("#pub-data", '{"order": "A-1042", "status": "delivered"}')
    await page.click("#publish-btn")
    await page.locator('#event-rows tr[data-seq="3"]').wait_for()
    assert "seq 3" in await page.locator("#pub-result").inner_text()
    await page.wait_for_timeout(1600)  # the new-row highlight fades
    await shot(page, "ui-events.png")


# ---------------------------------------------------------------------- agents


async def test_agent_run__conversation_with_reasoning_tools_guardrails_and_cost(
    page: Page, stack: Stack
) -> None:
    started = stack.post(
        "/workflows/support_agent/executions", {"payload": {"input": "Where is my order A-1042?"}}
    )
    assert stack.result(started["id"])["status"] == "completed"
    await page.goto(f"/#/executions/{started['id']}")
    await page.click('.tab[data-tab="conversation"]')
    conversation = page.locator(".conversation")
    await conversation.wait_for()
    text = await conversation.inner_text()
    assert "Where is my order A-1042?" in text
    assert "I should look it up first." in text  # reasoning
    assert "lookup_order" in text and "UPS" in text  # the tool call and its result
    assert "passed" in await page.locator(".guardrail").first.inner_text()
    assert await page.locator("#tokens-in").inner_text() == "950"
    assert await page.locator("#tokens-out").inner_text() == "65"
    assert (await page.locator("#cost").inner_text()).startswith("$0.000")
    assert "estimate" in text.lower()
    assert "arrives tomorrow" in await page.locator(".msg-final").inner_text()
    await shot(page, "ui-agent.png", full_page=True)


async def test_other_pages__workflows_workers_queues_schedules(page: Page, stack: Stack) -> None:
    await page.goto("/#/workflows")
    row = page.locator('#workflows tr[data-workflow="support_agent"]')
    await row.wait_for()
    assert "agent" in await row.inner_text() and "1 worker" in await row.inner_text()
    await page.click('a[data-nav="workers"]')
    await page.locator("#workers tr[data-worker]").first.wait_for()
    assert await page.locator("#workers .pill.ok").count() == len(stack.workers)
    await page.click('a[data-nav="queues"]')
    await page.locator("main .page-header h1", has_text="Queues").wait_for()
    await page.click('a[data-nav="schedules"]')
    await page.locator("main .page-header h1", has_text="Schedules").wait_for()
