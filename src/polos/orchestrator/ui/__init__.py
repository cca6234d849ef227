"""The web UI's static assets (a single-page app in plain JavaScript, no build step)."""

from __future__ import annotations

from pathlib import Path

STATIC_DIR = Path(__file__).parent / "static"
"""Where ``index.html``, ``app.css`` and the ES modules live."""

__all__ = ["STATIC_DIR"]
