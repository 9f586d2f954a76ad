"""POST /webhooks/generic: every answer the README lists, on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import NOW, OLD_SECRET, ROOT, SAMPLES, SECRET, make_settings
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


# --- signing help for CRM integrators (README, examples/sign_and_post.py) ------------------


README_BLOCKS: list[tuple[str, str]] = re.findall(
    r"```(\w*)\n(.*?)```", (ROOT / "README.md").read_text(), re.DOTALL
)
EXAMPLE_SCRIPT = ROOT / "examples" / "sign_and_post.py"


def _readme_block(language: str, containing: str) -> str:
    [block] = [text for lang, text in README_BLOCKS if lang == language and containing in text]
    return block


@contextmanager
def _capturing_server() -> Iterator[tuple[list[tuple[dict[str, str], bytes]], str]]:
    """Stands in for Thankly on a real port (the tools under test speak real HTTP) and
    keeps each request, to be replayed into the app with the clock at its signing time."""
    seen: list[tuple[dict[str, str], bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            seen.append(({k.lower(): v for k, v in self.headers.items()}, body))
            answer = json.dumps({"status": "accepted", "event_id": self.headers["webhook-id"]})
            self.send_response(202)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer.encode())

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    # shutdown() waits for the loop's next poll: 0.5 s by default, at every test's end.
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
    )
    thread.start()
    try:
        yield seen, f"http://127.0.0.1:{server.server_address[1]}/webhooks/generic"
    finally:
        server.shutdown()
        server.server_close()


def _replay(client: TestClient, clock: FixedClock, headers: dict[str, str], body: bytes) -> int:
    clock.set(datetime.fromtimestamp(int(headers["webhook-timestamp"]), UTC))
    names = ("content-type", "webhook-id", "webhook-timestamp", "webhook-signature")
    response = client.post(URL, content=body, headers={n: headers[n] for n in names})
    return int(response.status_code)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("THANKLY_")}
    return env | extra


def test_the_readme_shows_the_example_script_verbatim() -> None:
    script = EXAMPLE_SCRIPT.read_text()
    assert _readme_block("python", "hmac.new(") == script[script.index("import base64") :]


def test_the_python_example_signs_what_the_server_accepts(
    client: TestClient, clock: FixedClock
) -> None:
    event = SAMPLES / "deal_closed.ru.json"
    with _capturing_server() as (seen, url):
        done = subprocess.run(
            [sys.executable, str(EXAMPLE_SCRIPT), str(event), url],
            env=_env(SECRET=SECRET),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("202 ")
    [(headers, body)] = seen
    assert body == event.read_bytes()
    assert _replay(client, clock, headers, body) == 202


@pytest.mark.skipif(
    not all(shutil.which(tool) for tool in ("bash", "openssl", "curl", "base64", "od", "tr")),
    reason="needs bash, openssl, curl and coreutils",
)
def test_the_readme_openssl_line_signs_what_the_server_accepts(
    client: TestClient, clock: FixedClock
) -> None:
    line = _readme_block("sh", "openssl dgst")
    event = SAMPLES / "deal_closed.ru.json"
    with _capturing_server() as (seen, url):
        done = subprocess.run(
            ["bash", "-c", line],
            env=_env(SECRET=SECRET, URL=url, EVENT="examples/events/deal_closed.ru.json"),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 0, done.stderr
    assert '"status": "accepted"' in done.stdout
    [(headers, body)] = seen
    assert body == event.read_bytes()
    assert _replay(client, clock, headers, body) == 202


def test_signing_with_the_raw_whsec_string_gets_a_401_that_says_so(
    client: TestClient, nothing_stored: None
) -> None:
    body = json.dumps(event_doc()).encode()
    timestamp = str(int(NOW.timestamp()))
    key = SECRET.encode()  # the mistake: the whole string instead of its decoded part
    mac = hmac.new(key, f"evt_raw.{timestamp}.".encode() + body, hashlib.sha256).digest()
    headers = {
        "content-type": "application/json",
        "webhook-id": "evt_raw",
        "webhook-timestamp": timestamp,
        "webhook-signature": "v1," + base64.b64encode(mac).decode(),
    }
    status, answer = _post(client, body, headers)
    assert status == 401
    assert "made with the whole 'whsec_…' string as the HMAC key" in str(answer["error"])
    assert "the key is the base64-decoded part after 'whsec_'" in str(answer["error"])
