"""Signed approval links: decide a suspended execution from an e-mail or a chat message.

* ``POST /api/v1/executions/{id}/approval-links`` (an API route, authenticated like the
  others) checks that the execution is suspended at the step and returns a URL whose last
  segment is a signed token (:mod:`._signing`, purpose ``approval``) naming the project,
  the execution, the exact step (occurrence suffix included) and the approver.
* ``GET /approve/{token}`` (public: the token is the credential) shows the request: the
  workflow, the suspend data, the declared form, Approve / Reject and a comment box. It
  never changes anything (link previews and mail scanners fetch URLs).
* ``POST /approve/{token}`` (form-encoded) decides: it needs the token in the path *and*
  a hidden field holding a keyed digest of that token, which only the page has, so that
  no GET (an ``<img>``, a prefetch) and no blind cross-site form can decide. The resume
  is exact on the step key and records ``resumed_by = "link:<approver>"`` and the
  comment; a second use finds the step decided and resumes nothing.

The pages are self-contained HTML (every value escaped), with a strict CSP (no scripts,
one hashed inline style, forms only to this origin), no framing, no Referer (the token is
in the URL) and no caching.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import math
import os
import urllib.parse
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from polos.protocol import (
    API_PREFIX,
    ApprovalLink,
    ApprovalLinkRequest,
    Execution,
    StepKind,
    WaitInfo,
    now_ms,
)
from polos.storage import Resumed, ResumeOp, dumps, find_suspend

from ._routes import _ERRORS, ApiProblem, Project, Runtime, model_response
from ._runtime import OrchestratorRuntime
from ._signing import ExpiredToken, Signer, TokenError

APPROVAL_PURPOSE = "approval"
"""Purpose of approval-link tokens (see :class:`._signing.Signer`)."""

FORM_PURPOSE = "approval-form"
"""Purpose of the hidden field that authorizes a POST of the approval form."""

PUBLIC_URL_ENV = "POLOS_PUBLIC_URL"
"""Base URL put in links (e.g. ``https://polos.example.com``) instead of the request's."""

MAX_FORM_BYTES = 256 * 1024
MAX_FIELDS = 50
MAX_VALUE_CHARS = 10_000
MAX_COMMENT_CHARS = 4000
FIELD_TYPES = frozenset({"boolean", "text", "textarea", "number", "select"})

api_router = APIRouter(prefix=API_PREFIX, responses=_ERRORS)
page_router = APIRouter(include_in_schema=False)


# ---------------------------------------------------------------------------- claims


@dataclass(frozen=True, slots=True)
class LinkClaims:
    """What an approval token says: which decision, and for whom."""

    project: str
    execution: str
    step_key: str
    approver: str

    def as_dict(self) -> dict[str, str]:
        return {
            "project": self.project,
            "execution": self.execution,
            "step_key": self.step_key,
            "approver": self.approver,
        }

    @classmethod
    def from_dict(cls, claims: dict[str, Any]) -> LinkClaims | None:
        values = [claims.get(k) for k in ("project", "execution", "step_key", "approver")]
        strings = [v for v in values if isinstance(v, str) and v]
        if len(strings) != len(values):
            return None
        project, execution, step_key, approver = strings
        return cls(project, execution, step_key, approver)


# ---------------------------------------------------------------------------- the API route


def _base_url(request: Request) -> str:
    configured = os.environ.get(PUBLIC_URL_ENV, "").strip()
    return (configured or str(request.base_url)).rstrip("/")


@api_router.post(
    "/executions/{execution_id}/approval-links",
    response_model=ApprovalLink,
    status_code=201,
    summary="Create a signed link to decide a suspended execution",
    responses={409: {"description": "The execution is not suspended at that step"}},
)
async def create_approval_link(
    execution_id: str,
    body: ApprovalLinkRequest,
    request: Request,
    runtime: Runtime,
    project_id: Project,
) -> Response:
    """A URL that lets ``approver`` approve or reject the suspend step ``step_key`` once.

    The link is signed (HMAC) and expires after ``expires_in_seconds``; it decides the
    exact occurrence waiting now (``approval`` while ``approval#2`` waits gives a link for
    ``approval#2``). Whoever holds the link can decide: send it to the approver only.
    """
    found = await find_suspend(runtime.store, project_id, execution_id, body.step_key)
    if found.execution is None:
        raise ApiProblem(404, "execution_not_found", f"execution {execution_id!r} does not exist")
    if found.wait is None:
        raise ApiProblem(409, "not_waiting", found.message)
    claims = LinkClaims(project_id, execution_id, found.wait.step_key, body.approver)
    expires_at = now_ms() + body.expires_in_seconds * 1000
    token = runtime.signer.sign(APPROVAL_PURPOSE, claims.as_dict(), expires_at)
    link = ApprovalLink(
        url=f"{_base_url(request)}/approve/{token}",
        token=token,
        expires_at=expires_at,
        execution_id=execution_id,
        step_key=claims.step_key,
        approver=body.approver,
    )
    return model_response(link, 201)


# ---------------------------------------------------------------------------- HTML


_CSS = """
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;background:#f4f5f7;
color:#1f2328}
main{max-width:680px;margin:32px auto;background:#fff;border:1px solid #d0d7de;
border-radius:8px;padding:24px 28px}
h1{font-size:22px;margin:0 0 8px}h2{font-size:15px;margin:20px 0 8px;color:#57606a}
.meta{color:#57606a;margin:4px 0;font-size:14px}code{font-size:13px;word-break:break-all}
table{border-collapse:collapse;width:100%}th,td{text-align:left;vertical-align:top;
padding:6px 8px;border-top:1px solid #eaeef2}th{width:35%;color:#57606a;font-weight:600}
td{word-break:break-word}pre{margin:0;white-space:pre-wrap;word-break:break-word;font-size:13px}
label{display:block;font-weight:600;margin:12px 0 4px}.opt{font-weight:400;display:inline;
margin-right:16px}input[type=text],input[type=number],select,textarea{width:100%;
box-sizing:border-box;padding:6px 8px;border:1px solid #d0d7de;border-radius:6px;font:inherit}
.buttons{margin-top:18px;display:flex;gap:12px}button{font:inherit;font-weight:600;
padding:8px 20px;border-radius:6px;border:1px solid transparent;cursor:pointer}
.approve{background:#1f883d;color:#fff}.reject{background:#fff;color:#cf222e;
border-color:#cf222e}.error{background:#ffebe9;border:1px solid #ff8182;padding:8px 12px;
border-radius:6px}.ok{color:#1a7f37}.bad{color:#cf222e}.muted{color:#57606a}
""".strip()

_CSS_HASH = base64.b64encode(hashlib.sha256(_CSS.encode("utf-8")).digest()).decode("ascii")

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        f"default-src 'none'; style-src 'sha256-{_CSS_HASH}'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Robots-Tag": "noindex, nofollow",
}
"""Headers of every approval page (the token is in the URL: no Referer, no cache)."""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _page(status: int, title: str, body: str) -> HTMLResponse:
    document = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        '<meta name="referrer" content="no-referrer"><meta name="robots" content="noindex">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head>"
        f"<body><main><h1>{_e(title)}</h1>{body}</main></body></html>"
    )
    return HTMLResponse(document, status_code=status, headers=SECURITY_HEADERS)


def _label(name: str) -> str:
    text = name.replace("_", " ").replace("-", " ")
    return text[:1].upper() + text[1:]


def _json_text(value: Any) -> str:
    text = json.dumps(value, indent=2, ensure_ascii=False, default=str)
    return text if len(text) <= 20_000 else text[:20_000] + "\n..."


def _cell(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, list) and all(not isinstance(v, dict | list) for v in value):
        return _e(", ".join(str(v) for v in value))
    if isinstance(value, dict | list):
        return f"<pre>{_e(_json_text(value))}</pre>"
    return _e(value)


def _data_table(data: Any) -> str:
    """The suspend data as a table; keys starting with ``_`` (like ``_form``) are hidden."""
    if isinstance(data, dict):
        rows = [(k, v) for k, v in data.items() if not str(k).startswith("_")]
        if not rows:
            return '<p class="muted">No details attached.</p>'
        body = "".join(
            f"<tr><th>{_e(_label(str(k)))}</th><td>{_cell(v)}</td></tr>" for k, v in rows
        )
        return f"<table><tbody>{body}</tbody></table>"
    if data is None:
        return '<p class="muted">No details attached.</p>'
    return f"<pre>{_e(_json_text(data))}</pre>"


# ---------------------------------------------------------------------------- the declared form


@dataclass(frozen=True, slots=True)
class Field:
    """One field of the suspend data's ``_form`` (the same spec as the UI's inbox)."""

    name: str
    type: str
    required: bool
    label: str
    options: tuple[tuple[str, Any, str], ...]  # (canonical JSON, value, label)


def form_of(data: Any) -> tuple[str | None, list[Field]]:
    """The form's title and fields; ``approved`` is left out (the buttons decide it)."""
    form = data.get("_form") if isinstance(data, dict) else None
    if not isinstance(form, dict) or not isinstance(form.get("fields"), list):
        return None, []
    title = form.get("title") if isinstance(form.get("title"), str) else None
    fields: list[Field] = []
    for spec in form["fields"][:MAX_FIELDS]:
        if not isinstance(spec, dict):
            continue
        name, kind = spec.get("name"), spec.get("type") or "text"
        if not isinstance(name, str) or not name or name == "approved" or kind not in FIELD_TYPES:
            continue
        options: list[tuple[str, Any, str]] = []
        raw_options = spec.get("options")
        for option in raw_options if isinstance(raw_options, list) else []:
            value = option.get("value") if isinstance(option, dict) else option
            text = option.get("label", value) if isinstance(option, dict) else option
            try:
                options.append((json.dumps(value, sort_keys=True), value, str(text)))
            except (TypeError, ValueError):
                continue
        label = spec.get("label")
        fields.append(
            Field(
                name=name,
                type=kind,
                required=bool(spec.get("required")),
                label=label if isinstance(label, str) and label else _label(name),
                options=tuple(options),
            )
        )
    return title, fields


def _input(field: Field, index: int, previous: dict[str, str]) -> str:
    name = _e("f." + field.name)
    fid = f"f{index}"
    old = previous.get("f." + field.name, "")
    required = " required" if field.required else ""
    star = ' <span class="bad">*</span>' if field.required else ""
    head = f'<label for="{fid}">{_e(field.label)}{star}</label>'
    if field.type == "boolean":
        yes = " checked" if old == "true" else ""
        no = " checked" if old == "false" else ""
        return (
            f"<label>{_e(field.label)}{star}</label>"
            f'<label class="opt"><input type="radio" id="{fid}" name="{name}" value="true"'
            f"{required}{yes}> Yes</label>"
            f'<label class="opt"><input type="radio" name="{name}" value="false"{no}> No</label>'
        )
    if field.type == "textarea":
        return f'{head}<textarea id="{fid}" name="{name}" rows="3"{required}>{_e(old)}</textarea>'
    if field.type == "number":
        return (
            f'{head}<input type="number" step="any" id="{fid}" name="{name}" '
            f'value="{_e(old)}"{required}>'
        )
    if field.type == "select":
        choices = "".join(
            f'<option value="{_e(key)}"{" selected" if key == old else ""}>{_e(text)}</option>'
            for key, _, text in field.options
        )
        return (
            f'{head}<select id="{fid}" name="{name}"{required}>'
            f'<option value="">— choose —</option>{choices}</select>'
        )
    return f'{head}<input type="text" id="{fid}" name="{name}" value="{_e(old)}"{required}>'


def read_fields(
    fields: list[Field], form: dict[str, str], *, approving: bool
) -> tuple[dict[str, Any], str | None]:
    """The fields' values from the posted form, or an error naming the first bad field.

    Required fields are required to approve, not to reject.
    """
    values: dict[str, Any] = {}
    for field in fields:
        raw = form.get("f." + field.name, "")
        if len(raw) > MAX_VALUE_CHARS:
            return {}, f"{field.label} is longer than {MAX_VALUE_CHARS} characters"
        value: Any = None
        if field.type == "boolean":
            value = {"true": True, "false": False}.get(raw)
        elif field.type == "number" and raw.strip():
            try:
                value = int(raw.strip())
            except ValueError:
                try:
                    value = float(raw.strip())
                except ValueError:
                    return {}, f"{field.label} must be a number"
                if not math.isfinite(value):
                    return {}, f"{field.label} must be a finite number"
        elif field.type == "select" and raw:
            chosen = [v for key, v, _ in field.options if key == raw]
            if not chosen:
                return {}, f"{field.label}: choose one of the options"
            value = chosen[0]
        elif field.type in ("text", "textarea") and raw:
            value = raw
        if value is None:
            if field.required and approving:
                return {}, f"{field.label} is required"
            continue
        values[field.name] = value
    return values, None


# ---------------------------------------------------------------------------- pages


def _verify(signer: Signer, token: str) -> LinkClaims | HTMLResponse:
    try:
        claims = LinkClaims.from_dict(signer.verify(APPROVAL_PURPOSE, token))
    except ExpiredToken as exc:
        return _page(
            410,
            "This link has expired",
            f"<p>This approval link expired on <b>{_e(_when(exc.expires_at_ms))}</b>. "
            "Ask for a new one.</p>",
        )
    except TokenError:
        return _invalid_page()
    if claims is None:
        return _invalid_page()
    return claims


def _invalid_page() -> HTMLResponse:
    return _page(
        403,
        "This link is not valid",
        "<p>The link is incomplete, was changed, or was made with a key this server no "
        "longer uses. Copy the whole link from the message, or ask for a new one.</p>",
    )


def _not_found_page() -> HTMLResponse:
    return _page(404, "Not found", "<p>The execution this link decides does not exist.</p>")


def _header(execution: Execution, claims: LinkClaims) -> str:
    return (
        f'<p class="meta">Workflow <b>{_e(execution.workflow_id)}</b> · step '
        f"<code>{_e(claims.step_key)}</code> · execution <code>{_e(execution.id)}</code></p>"
    )


def _form_page(
    signer: Signer,
    token: str,
    claims: LinkClaims,
    execution: Execution,
    wait: WaitInfo,
    *,
    status: int = 200,
    error: str | None = None,
    previous: dict[str, str] | None = None,
) -> HTMLResponse:
    previous = previous or {}
    title, fields = form_of(wait.data)
    parts = [_header(execution, claims)]
    parts.append(f'<p class="meta">This link is for <b>{_e(claims.approver)}</b>.')
    if wait.expires_at is not None:
        parts.append(f" The request times out on {_e(_when(wait.expires_at))}.")
    parts.append("</p>")
    if error:
        parts.append(f'<p class="error" role="alert">{_e(error)}</p>')
    parts.append(f"<h2>Details</h2>{_data_table(wait.data)}")
    # No action attribute: the form posts to this page's own URL (the token's).
    parts.append('<form method="post">')
    parts.append(f'<input type="hidden" name="csrf" value="{_e(signer.mac(FORM_PURPOSE, token))}">')
    if fields:
        parts.append(f"<h2>{_e(title or 'Your answer')}</h2>")
        parts.extend(_input(f, i, previous) for i, f in enumerate(fields))
    parts.append(
        '<label for="comment">Comment</label>'
        f'<textarea id="comment" name="comment" rows="3" maxlength="{MAX_COMMENT_CHARS}" '
        f'placeholder="Recorded with your decision">{_e(previous.get("comment", ""))}</textarea>'
        '<div class="buttons">'
        '<button type="submit" name="decision" value="approve" class="approve">Approve</button>'
        '<button type="submit" name="decision" value="reject" class="reject" formnovalidate>'
        "Reject</button></div></form>"
    )
    return _page(status, title or "Approval requested", "".join(parts))


async def _closed_page(
    runtime: OrchestratorRuntime, claims: LinkClaims, execution: Execution, why: str
) -> HTMLResponse:
    """409: the step is not waiting any more (decided, timed out, execution finished)."""
    text = f"<p>This request can no longer be decided: {_e(why)}.</p>"
    for step in await runtime.store.list_steps(claims.execution):
        if step.key != claims.step_key or step.kind != StepKind.SUSPEND:
            continue
        output = step.output if isinstance(step.output, dict) else {}
        if step.error is not None:
            text = "<p>This request timed out before anyone decided; nothing was changed.</p>"
        elif "resumed_at" in output:
            data = output.get("data")
            approved = data.get("approved") if isinstance(data, dict) else None
            verdict = (
                "approved" if approved is True else "rejected" if approved is False else "answered"
            )
            by = output.get("resumed_by") or "someone"
            text = (
                f"<p>This request was already <b>{_e(verdict)}</b> by {_e(by)} on "
                f"{_e(_when(int(output['resumed_at'])))}. Your link changed nothing.</p>"
            )
    return _page(409, "Already decided", _header(execution, claims) + text)


async def _read_form(request: Request) -> dict[str, str] | HTMLResponse:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        return _page(415, "Unsupported form", "<p>Send the form from the approval page.</p>")
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        return _page(413, "Form too large", f"<p>The form is over {MAX_FORM_BYTES} bytes.</p>")
    try:
        pairs = urllib.parse.parse_qsl(
            body.decode("utf-8"), keep_blank_values=True, max_num_fields=4 * MAX_FIELDS + 10
        )
    except (UnicodeDecodeError, ValueError):
        return _page(400, "Invalid form", "<p>The form could not be read.</p>")
    form: dict[str, str] = {}
    for key, value in pairs:
        if "\x00" in value:
            return _page(400, "Invalid form", "<p>The form holds a NUL character.</p>")
        form.setdefault(key, value)
    return form


@page_router.get("/approve/{token}", response_class=HTMLResponse)
async def approval_page(token: str, runtime: Runtime) -> HTMLResponse:
    """The approval page. Reads only: opening (or previewing) the link decides nothing."""
    claims = _verify(runtime.signer, token)
    if isinstance(claims, HTMLResponse):
        return claims
    found = await find_suspend(
        runtime.store, claims.project, claims.execution, claims.step_key, exact=True
    )
    if found.execution is None:
        return _not_found_page()
    if found.wait is None:
        return await _closed_page(runtime, claims, found.execution, found.message)
    return _form_page(runtime.signer, token, claims, found.execution, found.wait)


@page_router.post("/approve/{token}", response_class=HTMLResponse)
async def decide(token: str, request: Request, runtime: Runtime) -> HTMLResponse:
    """Approve or reject: resumes the execution once, as ``link:<approver>``."""
    claims = _verify(runtime.signer, token)
    if isinstance(claims, HTMLResponse):
        return claims
    form = await _read_form(request)
    if isinstance(form, HTMLResponse):
        return form
    if not runtime.signer.check_mac(FORM_PURPOSE, token, form.get("csrf", "")):
        return _page(
            403,
            "Form not accepted",
            "<p>This decision did not come from the approval page. Open the link and "
            "use its buttons.</p>",
        )
    decision = form.get("decision")
    if decision not in ("approve", "reject"):
        return _page(400, "Invalid form", "<p>Choose Approve or Reject.</p>")
    approving = decision == "approve"
    found = await find_suspend(
        runtime.store, claims.project, claims.execution, claims.step_key, exact=True
    )
    if found.execution is None:
        return _not_found_page()
    if found.wait is None:
        return await _closed_page(runtime, claims, found.execution, found.message)
    _, fields = form_of(found.wait.data)
    values, error = read_fields(fields, form, approving=approving)
    comment = form.get("comment", "").strip()
    if error is None and len(comment) > MAX_COMMENT_CHARS:
        error = f"The comment is longer than {MAX_COMMENT_CHARS} characters"
    if error is not None:
        return _form_page(
            runtime.signer,
            token,
            claims,
            found.execution,
            found.wait,
            status=400,
            error=error,
            previous=form,
        )
    data: dict[str, Any] = {"approved": approving, **values}
    if not fields:  # as the UI's inbox: without a form, the workflow gets the comment too
        data["comment"] = comment or None
    result = await runtime.batcher.submit(
        ResumeOp(
            claims.project,
            claims.execution,
            claims.step_key,
            dumps(data),
            resumed_by=f"link:{claims.approver}",
            comment=comment or None,
            exact=True,
        )
    )
    assert isinstance(result, Resumed)
    if result.execution is None:
        return _not_found_page()
    if not result.resumed:
        return await _closed_page(runtime, claims, found.execution, result.message)
    runtime.gateway.wake()
    verdict = "Approved" if approving else "Rejected"
    css = "ok" if approving else "bad"
    return _page(
        200,
        verdict,
        _header(found.execution, claims)
        + f'<p class="{css}"><b>{verdict}.</b> Your decision was recorded as '
        f"<code>{_e('link:' + claims.approver)}</code> and the workflow goes on.</p>"
        '<p class="muted">This link cannot be used again.</p>',
    )
