"""Signed approval links end to end: a real orchestrator and worker, on both stores.

Create a link through the API, open it (GET shows the request and decides nothing),
decide through its form (POST resumes once, recorded as ``link:<approver>``), and the
refusals: a second use, an expired link, a changed token, a forged form, a link
pointed at another execution. A link still works after the orchestrator restarts: the
signing key is kept in the database.
"""

from __future__ import annotations

import asyncio
import base64
import html
import json
import re
import time
from datetime import timedelta
from typing import Any

import httpx
import pytest

from polos import PolosClient
from polos.errors import ExecutionNotFoundError, NotWaitingError
from polos.orchestrator._signing import Signer, canonical_json, load_signing_key
from polos.storage import get_or_create_secret, open_store
from polos.testing._processes import ServerProcess

from .conftest import SQLITE_ONLY, WORKERS_DIR, Servers, Workers, run_cli

WAITS_WORKER = WORKERS_DIR / "waits_worker.py"

pytestmark = pytest.mark.slow

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


async def _suspended(client: PolosClient, workflow: str, payload: Any) -> str:
    """Start ``workflow`` and wait until it is suspended; its execution id."""
    handle = await client.invoke(workflow, payload)
    for _ in range(400):
        page = await client.list_waits("suspend")
        if any(w.execution_id == handle.id for w in page.items):
            return handle.id
        await asyncio.sleep(0.025)
    raise AssertionError(f"{workflow} {handle.id} never suspended")


def _csrf(page: str) -> str:
    match = CSRF.search(page)
    assert match, page
    return html.unescape(match.group(1))


def _form(url: str, **fields: str) -> httpx.Response:
    return httpx.post(url, data=fields, timeout=10)


def _decode(token: str) -> dict[str, Any]:
    part = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))  # type: ignore[no-any-return]


def _encode(body: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(canonical_json(body).encode()).decode().rstrip("=")


def _suspend_step(steps: list[Any], key: str = "approval") -> Any:
    return next(s for s in steps if s.key == key)


def _assert_page_headers(response: httpx.Response) -> None:
    csp = response.headers["content-security-policy"]
    assert "default-src 'none'" in csp
    assert "form-action 'self'" in csp
    assert "script-src" not in csp
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["content-type"].startswith("text/html")


async def test_link_approves_once(
    server: ServerProcess, client: PolosClient, start_worker: Workers
) -> None:
    start_worker(WAITS_WORKER)
    eid = await _suspended(client, "approve", {})
    link = await client.approval_link(eid, "approval", approver="alice@example.com")
    assert link.url == f"{server.url}/approve/{link.token}"
    assert link.step_key == "approval" and link.execution_id == eid
    assert link.approver == "alice@example.com"

    # GET shows the request (workflow, data, buttons) and changes nothing, however often.
    for _ in range(3):
        page = httpx.get(link.url, timeout=10)
        assert page.status_code == 200, page.text
        _assert_page_headers(page)
        assert "approve" in page.text and "Ask" in page.text and "ok?" in page.text
        assert 'value="approve"' in page.text and 'value="reject"' in page.text
        assert "alice@example.com" in page.text
    execution = await client.get_execution(eid)
    assert execution.status.value == "waiting"

    # A POST without the page's hidden field (an <img>-like or blind cross-site request)
    # is refused and changes nothing.
    assert _form(link.url, decision="approve").status_code == 403
    assert _form(link.url, decision="approve", csrf="forged").status_code == 403
    assert httpx.post(link.url, json={"decision": "approve"}, timeout=10).status_code in (403, 415)
    assert (await client.get_execution(eid)).status.value == "waiting"

    done = _form(link.url, decision="approve", comment="looks fine", csrf=_csrf(page.text))
    assert done.status_code == 200, done.text
    _assert_page_headers(done)
    assert "Approved" in done.text and "link:alice@example.com" in done.text

    result = await client.result(eid, timeout=20)
    assert result == {
        "outcome": "resumed",
        "data": {"approved": True, "comment": "looks fine"},
    }
    step = _suspend_step(await client.list_steps(eid))
    assert step.output["resumed_by"] == "link:alice@example.com"
    assert step.output["comment"] == "looks fine"
    assert step.output["data"] == {"approved": True, "comment": "looks fine"}
    resumed_at = step.output["resumed_at"]

    # A second use (POST again, or reject) resumes nothing and says it was decided.
    for decision in ("approve", "reject"):
        again = _form(link.url, decision=decision, csrf=_csrf(page.text))
        assert again.status_code == 409, again.text
        assert "already" in again.text and "approved" in again.text
        assert "link:alice@example.com" in again.text
    shown = httpx.get(link.url, timeout=10)
    assert shown.status_code == 409 and "already" in shown.text
    step = _suspend_step(await client.list_steps(eid))
    assert step.output["resumed_at"] == resumed_at


@SQLITE_ONLY
async def test_reject_with_form_fields(
    server: ServerProcess, client: PolosClient, start_worker: Workers
) -> None:
    start_worker(WAITS_WORKER)
    order = {"id": "o-1", "amount": 5000, "items": ["gpu", "psu"]}
    eid = await _suspended(client, "process_order", order)
    link = await client.approval_link(eid, "approval", approver="bob")
    page = httpx.get(link.url, timeout=10)
    assert page.status_code == 200
    assert "5000" in page.text and "gpu, psu" in page.text and "o-1" in page.text
    done = _form(link.url, decision="reject", comment="too expensive", csrf=_csrf(page.text))
    assert done.status_code == 200 and "Rejected" in done.text
    result = await client.result(eid, timeout=20)
    assert result["status"] == "rejected"
    step = _suspend_step(await client.list_steps(eid))
    assert step.output["data"] == {"approved": False, "comment": "too expensive"}
    assert step.output["resumed_by"] == "link:bob"


@SQLITE_ONLY
async def test_expired_link(
    server: ServerProcess, client: PolosClient, start_worker: Workers
) -> None:
    start_worker(WAITS_WORKER)
    eid = await _suspended(client, "approve", {})
    link = await client.approval_link(eid, "approval", approver="carol", expires_in=1)
    page = httpx.get(link.url, timeout=10)
    assert page.status_code == 200
    await asyncio.sleep(1.3)
    expired = httpx.get(link.url, timeout=10)
    assert expired.status_code == 410, expired.text
    _assert_page_headers(expired)
    assert "expired" in expired.text and "UTC" in expired.text
    posted = _form(link.url, decision="approve", csrf=_csrf(page.text))
    assert posted.status_code == 410
    assert (await client.get_execution(eid)).status.value == "waiting"


@SQLITE_ONLY
async def test_tampered_and_swapped_tokens(
    server: ServerProcess, client: PolosClient, start_worker: Workers
) -> None:
    start_worker(WAITS_WORKER)
    first = await _suspended(client, "approve", {})
    second = await _suspended(client, "approve", {})
    link = await client.approval_link(first, "approval", approver="dave")
    page = httpx.get(link.url, timeout=10)
    csrf = _csrf(page.text)
    payload, signature = link.token.split(".")

    # A link for one execution pointed at another: the signature no longer matches.
    body = _decode(link.token)
    body["claims"]["execution"] = second
    swapped = f"{_encode(body)}.{signature}"
    # Longer validity, another approver: the same.
    extended = _decode(link.token)
    extended["exp"] += 10**9
    other = _decode(link.token)
    other["claims"]["approver"] = "mallory"
    flipped = signature[:-2] + ("AA" if signature[-2:] != "AA" else "BB")
    for bad in (
        swapped,
        f"{_encode(extended)}.{signature}",
        f"{_encode(other)}.{signature}",
        f"{payload}.{flipped}",
        payload,
        "nonsense",
    ):
        url = f"{server.url}/approve/{bad}"
        shown = httpx.get(url, timeout=10)
        assert shown.status_code == 403, (bad, shown.text)
        _assert_page_headers(shown)
        assert "not valid" in shown.text
        assert _form(url, decision="approve", csrf=csrf).status_code == 403
    for eid in (first, second):
        assert (await client.get_execution(eid)).status.value == "waiting"

    # The hidden field of one link's page does not authorize another link's POST.
    link2 = await client.approval_link(second, "approval", approver="erin")
    assert _form(link2.url, decision="approve", csrf=csrf).status_code == 403
    assert (await client.get_execution(second)).status.value == "waiting"

    # A token for another purpose, signed with the right key, is refused too.
    key = await _stored_key(server)
    session_like = Signer(key).sign("session", body["claims"], link.expires_at)
    assert httpx.get(f"{server.url}/approve/{session_like}", timeout=10).status_code == 403
    # ... while a token signed here with that key for this purpose works (the key is the
    # stored one), which also gives an already-expired link without waiting.
    past = Signer(key).sign("approval", _decode(link.token)["claims"], 1_000)
    assert httpx.get(f"{server.url}/approve/{past}", timeout=10).status_code == 410


async def _stored_key(server: ServerProcess) -> bytes:
    """The key the server signs with (POLOS_SECRET_KEY if the test run sets it)."""
    store = await open_store(server.database_url)
    try:
        return await load_signing_key(store)
    finally:
        await store.close()


@SQLITE_ONLY
async def test_create_link_errors(
    server: ServerProcess, client: PolosClient, start_worker: Workers
) -> None:
    start_worker(WAITS_WORKER)
    with pytest.raises(ExecutionNotFoundError):
        await client.approval_link("no-such-execution", "approval", approver="x")
    eid = await _suspended(client, "approve", {})
    with pytest.raises(NotWaitingError, match="not suspended at step 'other'"):
        await client.approval_link(eid, "other", approver="x")
    raw = httpx.post(
        f"{server.url}/api/v1/executions/{eid}/approval-links",
        json={"step_key": "approval", "approver": "x", "expires_in_seconds": 31 * 86400},
        timeout=10,
    )
    assert raw.status_code == 422
    raw = httpx.post(
        f"{server.url}/api/v1/executions/{eid}/approval-links",
        json={"step_key": "approval"},
        timeout=10,
    )
    assert raw.status_code == 422 and "approver" in raw.text
    await client.resume(eid, "approval", {"approved": True}, by="api")
    await client.result(eid, timeout=20)
    with pytest.raises(NotWaitingError, match="already resumed"):
        await client.approval_link(eid, "approval", approver="x")


async def test_link_is_for_one_occurrence(
    server: ServerProcess, client: PolosClient, start_worker: Workers
) -> None:
    """A link made for 'approval' does not decide the next suspend under the same key."""
    start_worker(WAITS_WORKER)
    eid = await _suspended(client, "approve_twice", {})
    first = await client.approval_link(eid, "approval", approver="frank")
    assert first.step_key == "approval"
    await client.resume(eid, "approval", {"n": 1}, by="api")
    for _ in range(400):
        waits = (await client.list_waits("suspend")).items
        if any(w.execution_id == eid and w.step_key == "approval#2" for w in waits):
            break
        await asyncio.sleep(0.025)
    else:
        raise AssertionError("never reached approval#2")
    page = httpx.get(first.url, timeout=10)
    assert page.status_code == 409
    second = await client.approval_link(eid, "approval", approver="frank")
    assert second.step_key == "approval#2"
    csrf = _csrf(httpx.get(second.url, timeout=10).text)
    # The first link's POST (with a valid field for the first link) resumes nothing.
    assert _form(first.url, decision="approve", csrf=csrf).status_code == 403
    first_page_csrf = Signer(await _stored_key(server)).mac("approval-form", first.token)
    assert _form(first.url, decision="approve", csrf=first_page_csrf).status_code == 409
    assert (await client.get_execution(eid)).status.value == "waiting"
    assert _form(second.url, decision="approve", csrf=csrf).status_code == 200
    assert await client.result(eid, timeout=20) == [{"n": 1}, {"approved": True, "comment": None}]


async def test_link_survives_restart(make_server: Servers, start_worker: Workers) -> None:
    server = make_server()
    start_worker(WAITS_WORKER, api_url=server.url)
    async with PolosClient(server.url) as client:
        eid = await _suspended(client, "approve", {})
        link = await client.approval_link(eid, "approval", approver="grace")
    page = httpx.get(link.url, timeout=10)
    assert page.status_code == 200
    server.stop(timeout=10)
    server.restart()
    # A second orchestrator on the same database signs and verifies with the same key.
    other = make_server()
    assert httpx.get(link.url.replace(server.url, other.url), timeout=10).status_code == 200
    again = httpx.get(link.url, timeout=10)
    assert again.status_code == 200
    done = _form(link.url, decision="approve", csrf=_csrf(again.text))
    assert done.status_code == 200, done.text
    async with PolosClient(server.url) as client:
        assert (await client.result(eid, timeout=30))["outcome"] == "resumed"
        step = _suspend_step(await client.list_steps(eid))
        assert step.output["resumed_by"] == "link:grace"


@SQLITE_ONLY
async def test_secret_key_env_overrides(make_server: Servers, start_worker: Workers) -> None:
    """POLOS_SECRET_KEY signs instead of the stored key; changing it revokes every link."""
    server = make_server(start=False)
    server.env["POLOS_SECRET_KEY"] = "first-secret-key-for-the-test-0123456789"
    server.start()
    start_worker(WAITS_WORKER, api_url=server.url)
    async with PolosClient(server.url) as client:
        eid = await _suspended(client, "approve", {})
        link = await client.approval_link(eid, "approval", approver="heidi")
    assert Signer(b"first-secret-key-for-the-test-0123456789").verify("approval", link.token)
    assert httpx.get(link.url, timeout=10).status_code == 200
    server.stop(timeout=10)
    server.env["POLOS_SECRET_KEY"] = "second-secret-key-for-the-test-0123456789"
    server.restart()
    assert httpx.get(link.url, timeout=10).status_code == 403


@SQLITE_ONLY
async def test_cli_prints_the_link(
    server: ServerProcess, client: PolosClient, start_worker: Workers
) -> None:
    start_worker(WAITS_WORKER)
    eid = await _suspended(client, "approve", {})
    done = await asyncio.to_thread(
        run_cli,
        "approval-link",
        eid,
        "approval",
        "--approver",
        "ivan@example.com",
        "--expires",
        "2h",
        api_url=server.url,
    )
    assert done.returncode == 0, done.stderr
    url = done.stdout.strip()
    assert url.startswith(f"{server.url}/approve/"), done.stdout
    body = _decode(url.rsplit("/", 1)[1])
    assert body["purpose"] == "approval"
    assert body["claims"]["approver"] == "ivan@example.com"
    assert body["claims"]["execution"] == eid
    assert abs(body["exp"] - (_now_ms() + 2 * 3600 * 1000)) < 60_000
    assert httpx.get(url, timeout=10).status_code == 200
    bad = await asyncio.to_thread(
        run_cli, "approval-link", eid, "nope", "--approver", "x", api_url=server.url
    )
    assert bad.returncode != 0 and "not suspended" in bad.stderr
    bad = await asyncio.to_thread(
        run_cli,
        "approval-link",
        eid,
        "approval",
        "--approver",
        "x",
        "--expires",
        "45d",
        api_url=server.url,
    )
    assert bad.returncode != 0 and "30 days" in bad.stderr


def _now_ms() -> int:
    return int(time.time() * 1000)


@SQLITE_ONLY
def test_sync_client(server: ServerProcess, start_worker: Workers) -> None:
    start_worker(WAITS_WORKER)
    client = PolosClient(server.url)
    handle = client.invoke_sync("approve", {})
    for _ in range(400):
        if any(w.execution_id == handle.id for w in client.list_waits_sync("suspend").items):
            break
        time.sleep(0.025)
    link = client.approval_link_sync(
        handle.id, "approval", approver="judy", expires_in=timedelta(minutes=5)
    )
    assert 4 * 60_000 < link.expires_at - _now_ms() <= 5 * 60_000
    with pytest.raises(ExecutionNotFoundError):
        client.approval_link_sync("no-such-execution", "approval", approver="judy")


FORM_WORKER = WORKERS_DIR / "approval_links_worker.py"


async def test_declared_form(
    server: ServerProcess, client: PolosClient, start_worker: Workers
) -> None:
    """The `_form` fields become inputs; their values reach the workflow, checked."""
    start_worker(FORM_WORKER)
    eid = await _suspended(client, "refund_review", {})
    link = await client.approval_link(eid, "review", approver="kim")
    page = httpx.get(link.url, timeout=10)
    assert page.status_code == 200
    text = page.text
    # Data escaped, private keys hidden, the form rendered (approved is the buttons' job).
    assert "<script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "_source" not in text and "_form" not in text
    assert "Refund this order?" in text
    assert 'name="f.amount"' in text and 'type="number"' in text
    assert 'name="f.reason"' in text and 'name="f.note"' in text and 'name="f.urgent"' in text
    assert 'name="f.approved"' not in text and "f.ignored" not in text
    csrf = _csrf(text)

    # Approving needs the required fields; a bad number or an unknown option is refused.
    for fields, message in (
        ({}, "Amount is required"),
        ({"f.amount": "lots"}, "Amount must be a number"),
        ({"f.amount": "5", "f.reason": '"stolen"'}, "choose one of the options"),
    ):
        refused = _form(link.url, decision="approve", csrf=csrf, **fields)
        assert refused.status_code == 400, refused.text
        assert message in refused.text
        assert 'value="approve"' in refused.text  # the form again, to correct
    assert (await client.get_execution(eid)).status.value == "waiting"

    done = _form(
        link.url,
        decision="approve",
        csrf=csrf,
        comment="ok <b>",
        **{"f.amount": "42.5", "f.reason": "3", "f.note": "line 1\nline 2", "f.urgent": "false"},
    )
    assert done.status_code == 200, done.text
    result = await client.result(eid, timeout=20)
    assert result == {
        "data": {
            "approved": True,
            "amount": 42.5,
            "reason": 3,
            "note": "line 1\nline 2",
            "urgent": False,
        },
        "by": "link:kim",
        "comment": "ok <b>",
    }


@SQLITE_ONLY
async def test_reject_needs_no_required_fields(
    server: ServerProcess, client: PolosClient, start_worker: Workers
) -> None:
    start_worker(FORM_WORKER)
    eid = await _suspended(client, "refund_review", {})
    link = await client.approval_link(eid, "review", approver="lee")
    csrf = _csrf(httpx.get(link.url, timeout=10).text)
    done = _form(link.url, decision="reject", csrf=csrf)
    assert done.status_code == 200, done.text
    result = await client.result(eid, timeout=20)
    assert result == {"data": {"approved": False}, "by": "link:lee", "comment": None}


async def test_concurrent_decisions_resume_once(
    server: ServerProcess, client: PolosClient, start_worker: Workers
) -> None:
    start_worker(WAITS_WORKER)
    eid = await _suspended(client, "approve", {})
    link = await client.approval_link(eid, "approval", approver="max")
    csrf = _csrf(httpx.get(link.url, timeout=10).text)
    async with httpx.AsyncClient(timeout=10) as http:
        answers = await asyncio.gather(
            *(
                http.post(
                    link.url, data={"decision": "approve" if i % 2 else "reject", "csrf": csrf}
                )
                for i in range(8)
            )
        )
    codes = sorted(a.status_code for a in answers)
    assert codes == [200] + [409] * 7, codes
    await client.result(eid, timeout=20)
    step = _suspend_step(await client.list_steps(eid))
    assert step.output["resumed_by"] == "link:max"


async def test_secret_is_made_once(db_url: str) -> None:
    """Concurrent first uses on two connections (two orchestrators) agree on one secret."""
    stores = [await open_store(db_url) for _ in range(2)]
    try:
        keys = await asyncio.gather(
            *(get_or_create_secret(stores[i % 2], "race-test") for i in range(10))
        )
        assert len(set(keys)) == 1 and len(keys[0]) == 32
        assert await get_or_create_secret(stores[0], "other") != keys[0]
        assert await get_or_create_secret(stores[1], "race-test") == keys[0]
    finally:
        for store in stores:
            await store.close()
