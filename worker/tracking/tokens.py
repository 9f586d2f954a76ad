"""Signed tokens for links in letters (unsubscribe, open pixel, click).

`<payload>.<mac>` in base64url: the payload is readable (a letter id, a URL) but cannot be
changed or invented without THANKLY_SECRET_KEY. Each purpose has its own key derivation,
so an unsubscribe token is never accepted as a click token.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: str, purpose: str, payload: bytes) -> bytes:
    key = hmac.new(secret.encode(), b"thankly-token:" + purpose.encode(), hashlib.sha256).digest()
    return hmac.new(key, payload, hashlib.sha256).digest()[:16]


def make_token(secret: str, purpose: str, payload: str) -> str:
    data = payload.encode()
    return f"{_b64(data)}.{_b64(_mac(secret, purpose, data))}"


def read_token(secret: str, purpose: str, token: str) -> str | None:
    """The payload of a genuine token for `purpose`, else None (never raises)."""
    body, _, mac = token.partition(".")
    try:
        data, given = _unb64(body), _unb64(mac)
    except (binascii.Error, ValueError):
        return None
    # One spelling per token: base64's unused trailing bits must not yield look-alikes.
    if _b64(data) != body or _b64(given) != mac:
        return None
    if not hmac.compare_digest(_mac(secret, purpose, data), given):
        return None
    try:
        return data.decode()
    except UnicodeDecodeError:
        return None
