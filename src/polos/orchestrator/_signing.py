"""Signed, expiring, purpose-bound tokens (HMAC-SHA256): approval links, UI sessions.

A token is ``<payload>.<signature>``, both base64url without padding:

* ``payload``: the canonical JSON (sorted keys, no spaces, ASCII) of
  ``{"claims": {...}, "exp": <epoch ms>, "purpose": "<purpose>"}``;
* ``signature``: ``HMAC-SHA256(key, b"polos.token.v1\\x00" + payload)``.

:meth:`Signer.verify` checks, in this order: the shape, the signature (a constant-time
comparison of the whole encoded signature, so that no other spelling of it passes), the
purpose, the expiry. A token minted for one purpose (``approval``) is refused for any
other (``session``) and vice versa: the purpose is inside what is signed.

The payload is signed, not encrypted: whoever holds a token can read its claims. Do not
put secrets in claims.

The key is one server secret shared by every orchestrator of a database
(:func:`load_signing_key`): ``POLOS_SECRET_KEY`` when set, otherwise a random key made
once and kept in the ``server_secrets`` table. Changing ``POLOS_SECRET_KEY`` (or
deleting the stored row while no key is given) invalidates every outstanding token:
approval links and sessions alike.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import re
from collections.abc import Mapping
from typing import Any

from polos.errors import ConfigurationError, PolosError
from polos.protocol import now_ms
from polos.storage import Store, get_or_create_secret

SECRET_ENV = "POLOS_SECRET_KEY"
"""Environment variable giving the signing key (overrides the stored one)."""

SECRET_NAME = "signing"
"""Name of the stored signing key in ``server_secrets``."""

MIN_KEY_BYTES = 16
"""Shortest key accepted (a generated key has 32 random bytes)."""

MAX_TOKEN_LENGTH = 8192
"""Longer tokens are refused before any work is done on them."""

_TOKEN_CONTEXT = b"polos.token.v1\x00"
_MAC_CONTEXT = b"polos.mac.v1\x00"
_B64 = re.compile(r"[A-Za-z0-9_-]+")


class TokenError(PolosError):
    """A token was refused. Subclasses say why; ``reason`` is a short stable code."""

    reason = "invalid"


class TamperedToken(TokenError):
    """Malformed, or not signed with this server's key (changed, forged, or old key)."""

    reason = "tampered"


class WrongPurpose(TokenError):
    """Authentic, but minted for another purpose (e.g. a session cookie used as a link)."""

    reason = "wrong_purpose"

    def __init__(self, expected: str, actual: str) -> None:
        super().__init__(f"token is for {actual!r}, not {expected!r}")
        self.expected = expected
        self.actual = actual


class ExpiredToken(TokenError):
    """Authentic and for this purpose, but past its expiry.

    Attributes:
        expires_at_ms: when it expired (epoch ms).
        claims: its claims (authentic: they may be shown, e.g. to say what expired).
    """

    reason = "expired"

    def __init__(self, expires_at_ms: int, claims: dict[str, Any]) -> None:
        super().__init__(f"token expired at {expires_at_ms} (epoch ms)")
        self.expires_at_ms = expires_at_ms
        self.claims = claims


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def canonical_json(value: Any) -> str:
    """The one JSON spelling of ``value`` that is signed (sorted keys, compact, ASCII)."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    )


class Signer:
    """Signs and verifies tokens with one key (see the module's docstring for the format).

    Args:
        key: the secret key, at least 16 bytes.
    """

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise ConfigurationError(f"a signing key needs at least {MIN_KEY_BYTES} bytes")
        self._key = key

    def __repr__(self) -> str:  # never show the key
        return "Signer(<key>)"

    def _signature(self, payload: str) -> str:
        digest = hmac.new(self._key, _TOKEN_CONTEXT + payload.encode("ascii"), hashlib.sha256)
        return _b64encode(digest.digest())

    def sign(self, purpose: str, claims: Mapping[str, Any], expires_at_ms: int) -> str:
        """A token carrying ``claims`` for ``purpose``, valid until ``expires_at_ms``.

        ``claims`` must be JSON data (a ``TypeError``/``ValueError`` otherwise).
        """
        if not purpose:
            raise ValueError("purpose must not be empty")
        body = {"claims": dict(claims), "exp": int(expires_at_ms), "purpose": purpose}
        payload = _b64encode(canonical_json(body).encode("ascii"))
        return f"{payload}.{self._signature(payload)}"

    def verify(self, purpose: str, token: str, *, now: int | None = None) -> dict[str, Any]:
        """The claims of ``token`` if it is authentic, for ``purpose`` and not expired.

        ``now``: the time to check the expiry against (epoch ms; default: now).

        Raises:
            TamperedToken: malformed or not signed with this key.
            WrongPurpose: signed, but for another purpose.
            ExpiredToken: signed and for this purpose, but expired.
        """
        if len(token) > MAX_TOKEN_LENGTH or token.count(".") != 1:
            raise TamperedToken("malformed token")
        payload, signature = token.split(".")
        if not _B64.fullmatch(payload) or not _B64.fullmatch(signature):
            raise TamperedToken("malformed token")
        if not hmac.compare_digest(self._signature(payload), signature):
            raise TamperedToken("bad signature")
        try:
            body = json.loads(_b64decode(payload))
        except (binascii.Error, ValueError) as exc:  # signed by us: cannot happen
            raise TamperedToken("malformed payload") from exc
        if not isinstance(body, dict):
            raise TamperedToken("malformed payload")
        claims, expires, actual = body.get("claims"), body.get("exp"), body.get("purpose")
        if not isinstance(claims, dict) or not isinstance(expires, int):
            raise TamperedToken("malformed payload")
        if actual != purpose:
            raise WrongPurpose(purpose, str(actual))
        if (now_ms() if now is None else now) >= expires:
            raise ExpiredToken(expires, claims)
        return claims

    def mac(self, purpose: str, message: str) -> str:
        """A keyed digest of ``message`` for ``purpose`` (base64url): e.g. a CSRF field
        derived from a token or a session id. Never equal to a token's signature."""
        data = _MAC_CONTEXT + purpose.encode("utf-8") + b"\x00" + message.encode("utf-8")
        return _b64encode(hmac.new(self._key, data, hashlib.sha256).digest())

    def check_mac(self, purpose: str, message: str, digest: str) -> bool:
        """Whether ``digest`` is :meth:`mac` of ``message`` for ``purpose`` (constant time)."""
        return hmac.compare_digest(self.mac(purpose, message), digest)


def key_from_env() -> bytes | None:
    """The key given by ``POLOS_SECRET_KEY`` (UTF-8 bytes of its text), if set."""
    raw = os.environ.get(SECRET_ENV, "").strip()
    if not raw:
        return None
    key = raw.encode("utf-8")
    if len(key) < MIN_KEY_BYTES:
        raise ConfigurationError(
            f"{SECRET_ENV} is too short: give at least {MIN_KEY_BYTES} bytes, e.g. the output "
            "of: python -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )
    return key


async def load_signing_key(store: Store) -> bytes:
    """The signing key: ``POLOS_SECRET_KEY`` if set, else the database's (made if absent)."""
    return key_from_env() or await get_or_create_secret(store, SECRET_NAME)
