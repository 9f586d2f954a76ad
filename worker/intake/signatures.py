"""Standard Webhooks signatures (https://www.standardwebhooks.com).

signed content = "{webhook-id}.{webhook-timestamp}.{raw body}", HMAC-SHA256 with the
base64-decoded secret, header `webhook-signature: v1,<base64> [v1,<base64> …]`.

Written here rather than taken from the `standardwebhooks` package because the intake
needs several secrets at once (rotation), an injectable clock, raw bytes that may not be
UTF-8, and error messages precise enough to debug a CRM's integration. The tests check
this module against that package in both directions.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime

from worker.settings import decode_webhook_secret

_TIMESTAMP = re.compile(r"^\d{1,12}$")


class SignatureError(Exception):
    """The request is not authentically from a holder of a configured secret."""


def _mac(key: bytes, msg_id: str, timestamp: str, body: bytes) -> bytes:
    signed = msg_id.encode() + b"." + timestamp.encode() + b"." + body
    return hmac.new(key, signed, hashlib.sha256).digest()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header value for one secret."""
    mac = _mac(decode_webhook_secret(secret), msg_id, str(timestamp), body)
    return "v1," + base64.b64encode(mac).decode()


def signed_headers(secret: str, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, msg_id, timestamp, body),
    }


def _candidates(header: str) -> list[bytes]:
    found = []
    for item in header.split():
        version, _, value = item.partition(",")
        if version != "v1" or not value:
            continue
        try:
            found.append(base64.b64decode(value, validate=True))
        except (binascii.Error, ValueError):
            continue
    return found


# Keys an integrator commonly uses by mistake, and what to tell them: HMAC with the whole
# "whsec_…" string, or with the base64 text after the prefix left undecoded.
def _whole_string(secret: str) -> bytes:
    return secret.encode()


def _undecoded(secret: str) -> bytes:
    return secret.removeprefix("whsec_").encode()


_MISTAKES: tuple[tuple[Callable[[str], bytes], str], ...] = (
    (_whole_string, "the whole 'whsec_…' string"),
    (_undecoded, "the base64 text after 'whsec_'"),
)


class WebhookVerifier:
    def __init__(self, secrets: Sequence[str], tolerance_seconds: int = 300) -> None:
        if not secrets:
            raise ValueError("at least one webhook secret is required")
        self._secrets = list(secrets)
        self._keys = [decode_webhook_secret(s) for s in secrets]
        self._tolerance = tolerance_seconds

    def _mistake(self, msg_id: str, timestamp: str, body: bytes, given: list[bytes]) -> str | None:
        """Which wrong key the sender used, when one of the usual mistakes explains the
        mismatch. Only a holder of the secret can produce such a MAC, so naming the mistake
        tells a stranger nothing."""
        for secret in self._secrets:
            for wrong_key, described in _MISTAKES:
                expected = _mac(wrong_key(secret), msg_id, timestamp, body)
                if any(hmac.compare_digest(expected, candidate) for candidate in given):
                    return described
        return None

    def verify(self, headers: Mapping[str, str], body: bytes, now: datetime) -> str:
        """Check the signature on the raw body; return the webhook id or raise SignatureError."""
        msg_id = headers.get("webhook-id", "")
        timestamp = headers.get("webhook-timestamp", "")
        signature = headers.get("webhook-signature", "")
        if not (msg_id and timestamp and signature):
            raise SignatureError(
                "missing webhook-id, webhook-timestamp or webhook-signature header"
            )
        if not _TIMESTAMP.match(timestamp):
            raise SignatureError("webhook-timestamp must be Unix seconds")
        skew = abs(now.timestamp() - int(timestamp))
        if skew > self._tolerance:
            raise SignatureError(
                f"webhook-timestamp is {int(skew)} s away from server time "
                f"(allowed ±{self._tolerance} s): stale, replayed or clock skew"
            )
        given = _candidates(signature)
        if not given:
            raise SignatureError("webhook-signature has no v1,<base64> signature")
        matched = False
        for key in self._keys:
            expected = _mac(key, msg_id, timestamp, body)
            for candidate in given:
                # compare_digest: no early exit that would leak how much of a guess was right.
                matched |= hmac.compare_digest(expected, candidate)
        if not matched:
            mistake = self._mistake(msg_id, timestamp, body, given)
            if mistake:
                raise SignatureError(
                    f"no signature matches a configured secret, but one was made with "
                    f"{mistake} as the HMAC key: the key is the base64-decoded part after "
                    f"'whsec_'"
                )
            raise SignatureError("no signature matches a configured secret")
        return msg_id
