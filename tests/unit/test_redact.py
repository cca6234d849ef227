"""Redaction of credentials in logs and traces."""

from __future__ import annotations

import json
import logging

import pytest

from polos._logs import JsonFormatter, TextFormatter
from polos._redact import REDACTED, redact, redact_text, reload_rules, secret_field

OPENAI = "sk-proj-" + "a1B2c3D4e5F6g7H8i9J0" * 2
POLOS = "polos_0123456789abcdef_" + "A" * 43


@pytest.mark.parametrize(
    "text",
    [
        f"calling with {OPENAI} now",
        f"key={POLOS}",
        "Authorization: Bearer abcdefghijklmnop.qrstu",
        "password=hunter2 and more",
        "AKIAABCDEFGHIJKLMNOP in config",
        "token: eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.abcdefghijkl",
    ],
)
def test_redact_text__credentials_are_replaced(text: str) -> None:
    out = redact_text(text)
    assert REDACTED in out
    for secret in (OPENAI, POLOS, "hunter2", "abcdefghijklmnop", "AKIAABCDEFGHIJKLMNOP"):
        assert secret not in out


def test_redact_text__ordinary_text_is_untouched() -> None:
    text = "order A-1042 shipped; 412 input tokens, token_count=3, skip-list ok"
    assert redact_text(text) == text


def test_redact__secret_fields_anywhere_in_a_structure() -> None:
    value = {
        "openai_api_key": "anything",
        "nested": [{"password": 1, "note": f"uses {OPENAI}"}],
        "input_tokens": 12,
        "token_count": 3,
        "Authorization": "x",
    }
    assert redact(value) == {
        "openai_api_key": REDACTED,
        "nested": [{"password": REDACTED, "note": f"uses {REDACTED}"}],
        "input_tokens": 12,
        "token_count": 3,
        "Authorization": REDACTED,
    }
    assert not secret_field("gen_ai.usage.input_tokens") and secret_field("x.auth_token")


def test_redact__extra_fields_and_patterns_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("POLOS_REDACT_FIELDS", "iban")
    monkeypatch.setenv("POLOS_REDACT_PATTERNS", r"\bCUST-\d{6}\b")
    reload_rules()
    try:
        assert redact({"iban": "FR76", "customer_iban": "x", "ref": "CUST-123456"}) == {
            "iban": REDACTED,
            "customer_iban": REDACTED,
            "ref": REDACTED,
        }
    finally:
        monkeypatch.delenv("POLOS_REDACT_FIELDS")
        monkeypatch.delenv("POLOS_REDACT_PATTERNS")
        reload_rules()


def test_log_formatters__never_write_a_key() -> None:
    try:
        raise ValueError(f"provider refused {OPENAI}")
    except ValueError:
        import sys

        exc_info = sys.exc_info()
    record = logging.LogRecord(
        "polos.test", logging.ERROR, __file__, 1, "with %s", (POLOS,), exc_info
    )
    for formatter in (JsonFormatter(), TextFormatter()):
        line = formatter.format(record)
        assert POLOS not in line and OPENAI not in line and REDACTED in line
    assert json.loads(JsonFormatter().format(record))["message"] == f"with {REDACTED}"
