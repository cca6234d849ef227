"""Signed tokens (orchestrator/_signing.py): round trip, tampering, purpose, expiry, keys."""

from __future__ import annotations

import base64
import json

import pytest

from polos.errors import ConfigurationError
from polos.orchestrator._signing import (
    ExpiredToken,
    Signer,
    TamperedToken,
    TokenError,
    WrongPurpose,
    canonical_json,
    key_from_env,
)

KEY = b"k" * 32
NOW = 1_700_000_000_000
LATER = NOW + 60_000
CLAIMS = {"project": "default", "execution": "e1", "step_key": "approval", "approver": "a@x"}


def _payload(token: str) -> dict[str, object]:
    part = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))  # type: ignore[no-any-return]


def _encode(body: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(canonical_json(body).encode()).decode().rstrip("=")


def test_round_trip() -> None:
    signer = Signer(KEY)
    token = signer.sign("approval", CLAIMS, LATER)
    assert signer.verify("approval", token, now=NOW) == CLAIMS
    assert set(token.replace("-", "").replace("_", "").replace(".", "")).issubset(
        set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
    ), "URL-safe: letters, digits, - _ and one dot"
    # Deterministic: the same claims (in any key order) give the same token.
    assert signer.sign("approval", dict(reversed(list(CLAIMS.items()))), LATER) == token
    # Unicode and nested claims survive.
    claims = {"who": "Zoë 😀", "nested": {"a": [1, 2.5, None, True]}}
    assert signer.verify("x", signer.sign("x", claims, LATER), now=NOW) == claims


def test_verify_uses_the_clock_by_default() -> None:
    signer = Signer(KEY)
    assert signer.verify("p", signer.sign("p", {"a": 1}, 2**53)) == {"a": 1}
    with pytest.raises(ExpiredToken):
        signer.verify("p", signer.sign("p", {"a": 1}, 1))


def test_tampered_payload_is_refused() -> None:
    signer = Signer(KEY)
    token = signer.sign("approval", CLAIMS, LATER)
    body = _payload(token)
    signature = token.split(".")[1]
    # Swap the execution: the signature no longer matches.
    swapped = {**body, "claims": {**CLAIMS, "execution": "e2"}}
    with pytest.raises(TamperedToken):
        signer.verify("approval", f"{_encode(swapped)}.{signature}", now=NOW)
    # Push the expiry out.
    extended = {**body, "exp": LATER + 10**9}
    with pytest.raises(TamperedToken):
        signer.verify("approval", f"{_encode(extended)}.{signature}", now=NOW)
    # Change the purpose inside the payload.
    repurposed = {**body, "purpose": "session"}
    with pytest.raises(TamperedToken):
        signer.verify("session", f"{_encode(repurposed)}.{signature}", now=NOW)


def test_tampered_signature_is_refused() -> None:
    signer = Signer(KEY)
    token = signer.sign("approval", CLAIMS, LATER)
    payload, signature = token.split(".")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    for bad in (
        f"{payload}.{flipped}",
        f"{payload}.{signature[:-1]}",  # truncated
        f"{payload}.{signature}A",  # extended
        f"{payload}.",
        f".{signature}",
        payload,
        f"{payload}.{signature}.{signature}",
        f"{payload}.{signature}=",  # padding is not part of the format
        f"{payload}.{signature.replace('-', '+')}" if "-" in signature else f"{payload}.!",
        "",
        "x" * 10_000,
        "é.é",
    ):
        with pytest.raises(TamperedToken):
            signer.verify("approval", bad, now=NOW)


def test_other_spelling_of_the_signature_is_refused() -> None:
    # The last base64 character carries unused low bits: another letter may decode to the
    # same bytes. The whole encoded signature is compared, so no second spelling passes.
    signer = Signer(KEY)
    token = signer.sign("approval", CLAIMS, LATER)
    payload, signature = token.split(".")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    for c in alphabet:
        if c == signature[-1]:
            continue
        with pytest.raises(TamperedToken):
            signer.verify("approval", f"{payload}.{signature[:-1]}{c}", now=NOW)


def test_wrong_purpose_is_refused() -> None:
    signer = Signer(KEY)
    link = signer.sign("approval", CLAIMS, LATER)
    session = signer.sign("session", {"user": "alice"}, LATER)
    with pytest.raises(WrongPurpose) as info:
        signer.verify("session", link, now=NOW)
    assert (info.value.expected, info.value.actual) == ("session", "approval")
    with pytest.raises(WrongPurpose):
        signer.verify("approval", session, now=NOW)


def test_expired_is_refused_with_its_expiry() -> None:
    signer = Signer(KEY)
    token = signer.sign("approval", CLAIMS, LATER)
    assert signer.verify("approval", token, now=LATER - 1) == CLAIMS
    for now in (LATER, LATER + 1, LATER + 10**9):
        with pytest.raises(ExpiredToken) as info:
            signer.verify("approval", token, now=now)
        assert info.value.expires_at_ms == LATER
        assert info.value.claims == CLAIMS
        assert isinstance(info.value, TokenError)


def test_expired_and_tampered_is_tampered() -> None:
    # An expired token that was also changed says nothing about its (forged) expiry.
    signer = Signer(KEY)
    token = signer.sign("approval", CLAIMS, NOW - 1)
    body = _payload(token)
    forged = f"{_encode({**body, 'claims': {'x': 1}})}.{token.split('.')[1]}"
    with pytest.raises(TamperedToken):
        signer.verify("approval", forged, now=NOW)


def test_different_secret_is_refused() -> None:
    token = Signer(KEY).sign("approval", CLAIMS, LATER)
    with pytest.raises(TamperedToken):
        Signer(b"j" * 32).verify("approval", token, now=NOW)
    with pytest.raises(TamperedToken):
        Signer(KEY + b"x").verify("approval", token, now=NOW)


def test_mac_is_keyed_and_purpose_bound() -> None:
    signer = Signer(KEY)
    token = signer.sign("approval", CLAIMS, LATER)
    digest = signer.mac("approval-form", token)
    assert signer.check_mac("approval-form", token, digest)
    assert not signer.check_mac("session-csrf", token, digest)
    assert not signer.check_mac("approval-form", token + "x", digest)
    assert not signer.check_mac("approval-form", token, "")
    assert not Signer(b"j" * 32).check_mac("approval-form", token, digest)
    assert digest != token.split(".")[1], "a mac is never a token signature"


def test_keys_and_claims_are_checked() -> None:
    with pytest.raises(ConfigurationError):
        Signer(b"short")
    signer = Signer(KEY)
    assert "k" * 16 not in repr(signer)
    with pytest.raises(ValueError):
        signer.sign("", {}, LATER)
    with pytest.raises(TypeError):
        signer.sign("p", {"x": object()}, LATER)
    with pytest.raises(ValueError):
        signer.sign("p", {"x": float("nan")}, LATER)


def test_key_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POLOS_SECRET_KEY", raising=False)
    assert key_from_env() is None
    monkeypatch.setenv("POLOS_SECRET_KEY", "  ")
    assert key_from_env() is None
    monkeypatch.setenv("POLOS_SECRET_KEY", "too-short")
    with pytest.raises(ConfigurationError, match="POLOS_SECRET_KEY"):
        key_from_env()
    monkeypatch.setenv("POLOS_SECRET_KEY", "a-long-enough-secret-key-for-tests")
    assert key_from_env() == b"a-long-enough-secret-key-for-tests"
