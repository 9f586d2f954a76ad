"""Standard Webhooks verification on raw bytes, checked against the official package."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from standardwebhooks import Webhook

from tests.conftest import NOW, OLD_SECRET, SECRET
from worker.intake.signatures import SignatureError, WebhookVerifier, sign, signed_headers

BODY = b'{"type":"deal.closed","timestamp":"2026-11-20T10:00:00Z","data":{}}'
TS = int(NOW.timestamp())


def verifier(*secrets: str) -> WebhookVerifier:
    return WebhookVerifier(list(secrets or [SECRET]))


def test_reference_signature_is_accepted() -> None:
    reference = Webhook(SECRET).sign("evt_1", NOW, BODY.decode())
    headers = {"webhook-id": "evt_1", "webhook-timestamp": str(TS), "webhook-signature": reference}
    assert verifier().verify(headers, BODY, NOW) == "evt_1"


def test_our_signature_passes_the_reference_verifier(time_machine: object) -> None:
    time_machine.move_to(NOW, tick=False)  # type: ignore[attr-defined]
    headers = signed_headers(SECRET, "evt_2", TS, BODY)
    assert Webhook(SECRET).verify(BODY, headers) == {
        "type": "deal.closed",
        "timestamp": "2026-11-20T10:00:00Z",
        "data": {},
    }


def test_rotation_accepts_old_and_new_secret() -> None:
    both = verifier(SECRET, OLD_SECRET)
    for secret in (SECRET, OLD_SECRET):
        assert both.verify(signed_headers(secret, "evt_1", TS, BODY), BODY, NOW) == "evt_1"


def test_several_signatures_in_one_header_any_valid_one_counts() -> None:
    wrong = sign(OLD_SECRET, "evt_1", TS, BODY)
    right = sign(SECRET, "evt_1", TS, BODY)
    headers = signed_headers(SECRET, "evt_1", TS, BODY)
    headers["webhook-signature"] = f"v1a,abc {wrong} {right}"
    assert verifier().verify(headers, BODY, NOW) == "evt_1"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"webhook-id": ""}, "missing"),
        ({"webhook-timestamp": ""}, "missing"),
        ({"webhook-signature": ""}, "missing"),
        ({"webhook-timestamp": "2026-11-20T10:05:00Z"}, "Unix seconds"),
        ({"webhook-timestamp": "-5"}, "Unix seconds"),
        ({"webhook-signature": "v2,AAAA"}, "no v1"),
        ({"webhook-signature": "v1,not base64!"}, "no v1"),
        ({"webhook-signature": "v1," + base64.b64encode(b"x" * 32).decode()}, "no signature"),
        ({"webhook-id": "evt_other"}, "no signature"),
    ],
)
def test_bad_headers_are_rejected_with_a_reason(change: dict[str, str], message: str) -> None:
    headers = signed_headers(SECRET, "evt_1", TS, BODY) | change
    with pytest.raises(SignatureError, match=message):
        verifier().verify(headers, BODY, NOW)


def test_unknown_secret_is_rejected() -> None:
    headers = signed_headers(OLD_SECRET, "evt_1", TS, BODY)
    with pytest.raises(SignatureError, match="no signature matches"):
        verifier(SECRET).verify(headers, BODY, NOW)


@pytest.mark.parametrize("skew", [-300, 0, 300])
def test_timestamp_inside_five_minutes_is_accepted(skew: int) -> None:
    headers = signed_headers(SECRET, "evt_1", TS + skew, BODY)
    assert verifier().verify(headers, BODY, NOW) == "evt_1"


@pytest.mark.parametrize("skew", [-301, 301, -86400])
def test_timestamp_outside_five_minutes_is_rejected(skew: int) -> None:
    headers = signed_headers(SECRET, "evt_1", TS + skew, BODY)
    with pytest.raises(SignatureError, match="away from server time"):
        verifier().verify(headers, BODY, NOW)


def test_a_replay_later_fails_on_time_even_with_a_valid_signature() -> None:
    headers = signed_headers(SECRET, "evt_1", TS, BODY)
    with pytest.raises(SignatureError):
        verifier().verify(headers, BODY, NOW + timedelta(minutes=6))


def test_signature_covers_bytes_that_are_not_utf8() -> None:
    body = b"\xff\xfe not utf-8"
    assert verifier().verify(signed_headers(SECRET, "e", TS, body), body, NOW) == "e"


@given(position=st.integers(min_value=0, max_value=len(BODY) - 1), flip=st.integers(1, 255))
def test_any_changed_byte_breaks_the_signature(position: int, flip: int) -> None:
    headers = signed_headers(SECRET, "evt_1", TS, BODY)
    tampered = bytearray(BODY)
    tampered[position] ^= flip
    with pytest.raises(SignatureError):
        verifier().verify(headers, bytes(tampered), NOW)


def test_a_secret_that_is_not_base64_is_refused_up_front() -> None:
    with pytest.raises(ValueError, match="base64"):
        WebhookVerifier(["whsec_***not-base64***"])


def _signed_with_key(key: bytes, msg_id: str = "evt_1") -> dict[str, str]:
    mac = hmac.new(key, f"{msg_id}.{TS}.".encode() + BODY, hashlib.sha256).digest()
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(TS),
        "webhook-signature": "v1," + base64.b64encode(mac).decode(),
    }


@pytest.mark.parametrize(
    ("wrong_key", "named"),
    [
        (OLD_SECRET.encode(), "the whole 'whsec_…' string"),
        (OLD_SECRET.removeprefix("whsec_").encode(), "the base64 text after 'whsec_'"),
    ],
)
def test_a_common_key_mistake_is_named_in_the_refusal(wrong_key: bytes, named: str) -> None:
    with pytest.raises(SignatureError) as info:
        verifier(SECRET, OLD_SECRET).verify(_signed_with_key(wrong_key), BODY, NOW)
    assert f"one was made with {named} as the HMAC key" in str(info.value)
    assert "the key is the base64-decoded part after 'whsec_'" in str(info.value)


def test_a_mistake_with_someone_elses_secret_gets_no_hint() -> None:
    # The raw string of a secret this server does not hold explains nothing.
    with pytest.raises(SignatureError) as info:
        verifier(SECRET).verify(_signed_with_key(OLD_SECRET.encode()), BODY, NOW)
    assert str(info.value) == "no signature matches a configured secret"
