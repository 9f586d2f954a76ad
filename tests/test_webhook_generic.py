"""POST /webhooks/generic: every answer DESIGN.md lists, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import NOW, OLD_SECRET, SAMPLES, SECRET, make_settings
from tests.helpers import count_rows, event_doc, signed
from worker.clock import FixedClock
from worker.http.app import create_app
from worker.queue import INGEST_INBOX, RecordingDispatcher
from worker.runtime import Runtime, build_runtime

URL = "/webhooks/generic"


def test_new_event_is_stored_then_enqueued(
    client: TestClient, runtime: Runtime, dispatcher: RecordingDispatcher
) -> None:
    body, headers = signed(event_doc(), SECRET, NOW, "evt_new")
    response = client.post(URL, content=body, headers=headers)
    assert response.status_code == 202
    assert response.json() == {"status": "accepted", "event_id": "evt_new"}
    assert count_rows(runtime.session_factory) == (1, 0)
    assert dispatcher.sent == [(INGEST_INBOX, (1,))]


def test_redelivery_is_a_duplicate_and_creates_nothing(
    client: TestClient, runtime: Runtime, dispatcher: RecordingDispatcher
) -> None:
    body, headers = signed(event_doc(), SECRET, NOW, "evt_twice")
    assert client.post(URL, content=body, headers=headers).status_code == 202
    again = client.post(URL, content=body, headers=headers)
    assert again.status_code == 200
    assert again.json() == {"status": "duplicate", "event_id": "evt_twice"}
    assert count_rows(runtime.session_factory) == (1, 0)
    assert len(dispatcher.sent) == 1


def test_the_old_secret_still_works_during_rotation(client: TestClient) -> None:
    body, headers = signed(event_doc(), OLD_SECRET, NOW, "evt_old")
    assert client.post(URL, content=body, headers=headers).status_code == 202


@pytest.mark.parametrize("path", sorted(SAMPLES.glob("*.json")), ids=lambda p: p.name)
def test_example_events_are_accepted_byte_for_byte(client: TestClient, path: object) -> None:
    raw = path.read_bytes()  # type: ignore[attr-defined]
    body, headers = signed(raw, SECRET, NOW, f"evt_{path.name}")  # type: ignore[attr-defined]
    assert client.post(URL, content=body, headers=headers).status_code == 202


# --- rejections: each one answers with a reason and stores nothing ------------------------


@pytest.fixture
def nothing_stored(runtime: Runtime) -> Iterator[None]:
    yield
    assert count_rows(runtime.session_factory) == (0, 0)


def _post(
    client: TestClient, body: bytes, headers: dict[str, str]
) -> tuple[int, dict[str, object]]:
    response = client.post(URL, content=body, headers=headers)
    return response.status_code, response.json()


@pytest.mark.usefixtures("nothing_stored")
class TestRejections:
    def test_missing_signature_is_401(self, client: TestClient) -> None:
        body, headers = signed(event_doc(), SECRET, NOW)
        del headers["webhook-signature"]
        status, answer = _post(client, body, headers)
        assert (status, answer["status"]) == (401, "rejected")
        assert "webhook-signature" in str(answer["error"])

    def test_wrong_secret_is_401(self, client: TestClient) -> None:
        body, headers = signed(event_doc(), "whsec_" + "A" * 32, NOW)
        assert _post(client, body, headers)[0] == 401

    def test_body_changed_after_signing_is_401(self, client: TestClient) -> None:
        body, headers = signed(event_doc(), SECRET, NOW)
        assert _post(client, body.replace(b"anna", b"evil"), headers)[0] == 401

    def test_stale_timestamp_is_401(self, client: TestClient) -> None:
        body, headers = signed(event_doc(), SECRET, NOW - timedelta(minutes=6))
        status, answer = _post(client, body, headers)
        assert status == 401 and "away from server time" in str(answer["error"])

    def test_malformed_json_is_400(self, client: TestClient) -> None:
        body, headers = signed(b'{"type": "deal.closed",', SECRET, NOW)
        status, answer = _post(client, body, headers)
        assert status == 400 and "malformed JSON" in str(answer["error"])

    @pytest.mark.parametrize(
        "raw",
        [b"\xff\xfe{}", b'{"a": NaN}', b"[" * 100_000 + b"]" * 100_000],
        ids=["not-utf8", "nan", "deeply-nested"],
    )
    def test_json_we_cannot_store_faithfully_is_400(self, client: TestClient, raw: bytes) -> None:
        body, headers = signed(raw, SECRET, NOW)
        assert _post(client, body, headers)[0] == 400

    def test_invalid_event_is_422_with_each_problem(self, client: TestClient) -> None:
        doc = event_doc()
        doc["type"] = "deal.won"
        doc["data"]["contact"]["email"] = "nope"
        body, headers = signed(doc, SECRET, NOW)
        status, answer = _post(client, body, headers)
        assert status == 422
        fields = {p["field"] for p in answer["problems"]}  # type: ignore[attr-defined]
        assert {"type", "data.contact.email"} <= fields

    def test_body_over_256_kib_is_413(self, client: TestClient) -> None:
        doc = event_doc()
        doc["padding"] = "x" * (256 * 1024)
        body, headers = signed(doc, SECRET, NOW)
        status, answer = _post(client, body, headers)
        assert status == 413 and "262144" in str(answer["error"])

    def test_chunked_body_over_the_cap_is_413(self, client: TestClient) -> None:
        body, headers = signed(b"{" + b" " * (300 * 1024) + b"}", SECRET, NOW)

        def chunks() -> Iterator[bytes]:
            for start in range(0, len(body), 16 * 1024):
                yield body[start : start + 16 * 1024]

        response = client.post(URL, content=chunks(), headers=headers)
        assert response.status_code == 413

    @pytest.mark.parametrize(
        "content_type", [None, "text/plain", "application/x-www-form-urlencoded"]
    )
    def test_not_json_is_415(self, client: TestClient, content_type: str | None) -> None:
        body, headers = signed(event_doc(), SECRET, NOW)
        del headers["content-type"]
        if content_type:
            headers["content-type"] = content_type
        assert _post(client, body, headers)[0] == 415

    def test_overlong_event_id_is_400(self, client: TestClient) -> None:
        body, headers = signed(event_doc(), SECRET, NOW, msg_id="e" * 256)
        assert _post(client, body, headers)[0] == 400


def test_json_with_charset_is_accepted(client: TestClient) -> None:
    body, headers = signed(event_doc(), SECRET, NOW)
    headers["content-type"] = "application/json; charset=utf-8"
    assert client.post(URL, content=body, headers=headers).status_code == 202


def test_logs_never_show_secrets_or_bodies(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    doc = event_doc(email="private.person@example.org")
    body, headers = signed(doc, SECRET, NOW, "evt_log")
    client.post(URL, content=body, headers=headers)
    bad = dict(headers, **{"webhook-id": "evt_bad"})
    client.post(URL, content=body, headers=bad)
    text = caplog.text
    assert "evt_log" in text  # the log is useful...
    for leak in (
        SECRET,
        SECRET.removeprefix("whsec_"),
        headers["webhook-signature"],
        "private.person",
    ):
        assert leak not in text  # ...but says nothing secret or personal


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    body=st.one_of(
        st.binary(max_size=300),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=20),
            lambda inner: (
                st.lists(inner, max_size=4)
                | st.dictionaries(st.text(max_size=8), inner, max_size=4)
            ),
            max_leaves=12,
        ).map(lambda doc: json.dumps(doc).encode()),
    ),
    sign_it=st.booleans(),
)
def test_no_client_input_causes_a_server_error(
    client: TestClient, body: bytes, sign_it: bool
) -> None:
    headers = {"content-type": "application/json"}
    if sign_it:
        headers = signed(body, SECRET, NOW, "evt_fuzz")[1]
    assert client.post(URL, content=body, headers=headers).status_code < 500


def test_nul_characters_are_refused_not_stored(client: TestClient, runtime: Runtime) -> None:
    """PostgreSQL cannot hold NUL in text/JSONB: accepting it would make an unprocessable row."""
    raw = (
        b'{"type":"deal.closed","timestamp":"2026-11-20T10:00:00Z",'
        b'"data":{"contact":{"email":"a@example.com","first_name":"A\\u0000B"}}}'
    )
    body, headers = signed(raw, SECRET, NOW)
    response = client.post(URL, content=body, headers=headers)
    assert response.status_code == 422
    assert response.json()["problems"][0]["field"] == "data.contact.first_name"
    assert count_rows(runtime.session_factory) == (0, 0)


def test_database_outage_is_503_so_the_sender_retries(tmp_path: Path, clock: FixedClock) -> None:
    url = "postgresql+psycopg://postgres@127.0.0.1:1/test"  # nothing listens on port 1
    down = build_runtime(make_settings(tmp_path, url), clock=clock)
    with TestClient(create_app(down)) as down_client:
        body, headers = signed(event_doc(), SECRET, NOW)
        response = down_client.post(URL, content=body, headers=headers)
    assert response.status_code == 503
    assert response.headers["retry-after"] == "30"
    assert response.json()["status"] == "unavailable"
