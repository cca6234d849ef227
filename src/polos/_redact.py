"""Redaction of secrets in what Polos writes for people and tools: logs and traces.

Two rules, applied to log lines (message and traceback) and to every span (attribute
values, status messages) the orchestrator serves or exports:

* values that look like credentials are replaced wherever they appear: Polos API keys
  (``polos_<id>_<secret>``), OpenAI / Anthropic style keys (``sk-...``), bearer tokens,
  AWS access key ids, GitHub tokens, JWTs, and ``password=...`` style pairs;
* in structured values (dicts), the values of fields whose name says "secret"
  (``api_key``, ``password``, ``token``, ``authorization``, ``secret``, ``credentials``,
  ``private_key``..., alone or as the end of a name: ``openai_api_key``) are replaced
  whatever they hold.

``POLOS_REDACT_FIELDS`` adds field names (comma-separated, case-insensitive, matched the
same way) and ``POLOS_REDACT_PATTERNS`` adds regular expressions (separated by ``;;``).
The recorded step log itself is never changed: replay needs the exact values.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

REDACTED = "[REDACTED]"

_VALUE_PATTERNS = (
    r"polos_[0-9a-f]{16}_[A-Za-z0-9_-]{43}",
    r"\bsk-(?:ant-|proj-)?[A-Za-z0-9_-]{16,}",
    r"(?i:\bbearer\s+[A-Za-z0-9._~+/=-]{8,})",
    r"\bAKIA[0-9A-Z]{16}\b",
    r"\bgh[pousr]_[A-Za-z0-9]{30,}\b",
    r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",
    r"(?i:\b(?:password|passwd|secret|api[_-]?key|token)\s*[=:]\s*[^\s,;&\"']+)",
)
_FIELD_WORDS = (
    "password",
    "passwd",
    "secret",
    "secret_key",
    "api_key",
    "apikey",
    "token",
    "access_token",
    "refresh_token",
    "authorization",
    "credential",
    "credentials",
    "private_key",
    "cookie",
)


@lru_cache(maxsize=1)
def _rules() -> tuple[re.Pattern[str], tuple[str, ...]]:
    patterns = list(_VALUE_PATTERNS)
    extra = os.environ.get("POLOS_REDACT_PATTERNS", "")
    patterns += [p for p in extra.split(";;") if p.strip()]
    fields = list(_FIELD_WORDS)
    fields += [
        f.strip().lower() for f in os.environ.get("POLOS_REDACT_FIELDS", "").split(",") if f.strip()
    ]
    return re.compile("|".join(f"(?:{p})" for p in patterns)), tuple(fields)


def redact_text(text: str) -> str:
    """``text`` with credential-looking values replaced by ``[REDACTED]``."""
    pattern, _ = _rules()
    return pattern.sub(REDACTED, text)


def secret_field(name: str) -> bool:
    """Whether a field of this name holds a secret (its value is never shown).

    The name, lower-cased with ``-`` read as ``_``, is one of the secret words or ends
    with one after ``_`` or ``.`` (``openai_api_key``, ``x.auth_token``), so that
    ``input_tokens`` or ``token_count`` stay visible.
    """
    normalized = name.lower().replace("-", "_")
    return any(
        normalized == word or normalized.endswith(("_" + word, "." + word)) for word in _rules()[1]
    )


def redact(value: Any) -> Any:
    """A copy of a JSON-like value with secret fields and credential-looking strings redacted."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {
            k: (REDACTED if isinstance(k, str) and secret_field(k) else redact(v))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value


def reload_rules() -> None:
    """Read ``POLOS_REDACT_*`` again (tests)."""
    _rules.cache_clear()
