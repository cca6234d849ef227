"""Code fingerprints: a short hash of a workflow function's source."""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable
from typing import Any


def fingerprint(fn: Callable[..., Any]) -> str:
    """A 16-hex-digit hash of ``fn``'s source (its bytecode when the source is unavailable)."""
    try:
        material = inspect.getsource(fn).encode()
    except (OSError, TypeError):
        code = getattr(fn, "__code__", None)
        material = (
            code.co_code + repr(code.co_consts).encode() if code is not None else repr(fn).encode()
        )
    return hashlib.sha256(material).hexdigest()[:16]
