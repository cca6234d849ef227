"""The web UI served by the orchestrator itself: ``/`` and ``/ui/static/<file>``.

The UI is a single-page app in plain JavaScript modules (no build step, nothing
fetched from the internet) that talks only to the JSON API. Its files ship inside
the package (:data:`polos.orchestrator.ui.STATIC_DIR`). Static files are revalidated
on every load (``no-cache`` with an ``ETag``), so an upgraded orchestrator never
serves a stale mix of modules.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ._routes import ApiProblem
from .ui import STATIC_DIR

_MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}

_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    # Nothing from elsewhere: scripts, styles and API calls are same-origin only.
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
}


class _Asset:
    __slots__ = ("body", "etag", "media_type", "stamp")

    def __init__(self, path: Path, stamp: tuple[int, int]) -> None:
        self.body = path.read_bytes()
        self.etag = '"' + hashlib.sha256(self.body).hexdigest()[:20] + '"'
        self.media_type = _MEDIA_TYPES.get(path.suffix, "application/octet-stream")
        self.stamp = stamp


_NAMES = (
    frozenset(p.name for p in STATIC_DIR.iterdir() if p.is_file()) if STATIC_DIR.is_dir() else ()
)
"""The files that ship: only these names are ever served (no path is joined from a request)."""

_cache: dict[str, _Asset] = {}


def _asset(name: str) -> _Asset | None:
    """A static file, read once and again only when it changes on disk (a stat per request)."""
    if name not in _NAMES:
        return None
    path = STATIC_DIR / name
    try:
        st = path.stat()
    except OSError:
        return None
    stamp = (st.st_mtime_ns, st.st_size)
    cached = _cache.get(name)
    if cached is None or cached.stamp != stamp:
        cached = _cache[name] = _Asset(path, stamp)
    return cached


ui_router = APIRouter(include_in_schema=False)


def _serve(asset: _Asset, request: Request) -> Response:
    headers = {"ETag": asset.etag, "Cache-Control": "no-cache", **_SECURITY_HEADERS}
    if request.headers.get("if-none-match") == asset.etag:
        return Response(status_code=304, headers=headers)
    return Response(asset.body, media_type=asset.media_type, headers=headers)


@ui_router.get("/")
async def ui_index(request: Request) -> Response:
    """The web UI (the page routes itself on the URL's ``#/...`` fragment)."""
    asset = _asset("index.html")
    if asset is None:
        raise ApiProblem(404, "ui_missing", "the web UI's files are not installed")
    return _serve(asset, request)


@ui_router.get("/ui/static/{name}")
async def ui_static(name: str, request: Request) -> Response:
    """One file of the UI (only files that ship in the package: no path is ever joined)."""
    asset = _asset(name)
    if asset is None:
        raise ApiProblem(404, "not_found", f"no UI file {name!r}")
    return _serve(asset, request)
