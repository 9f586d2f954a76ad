"""/admin: the same operations over HTTP, only for the bearer of THANKLY_ADMIN_TOKEN."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import select, update

from tests.conftest import SAMPLES, make_settings
from tests.helpers import all_letters, ingest_doc
from worker.clock import FixedClock
from worker.http.app import create_app
from worker.models import AuditEntry, Letter
from worker.queue import RecordingDispatcher
from worker.runtime import Runtime, build_runtime

TOKEN = "adm-7f3c9a1e5b2d4c6e8f0a"
FEEDBACK: dict[str, Any] = json.loads((SAMPLES / "feedback_logged.de.json").read_text())


@pytest.fixture
def admin_runtime(tmp_path: Path, db_url: str, clock: FixedClock) -> Iterator[Runtime]:
    runtime = build_runtime(
        make_settings(tmp_path, db_url, admin_token=SecretStr(TOKEN)),
        clock=clock,
        dispatcher=RecordingDispatcher(),
    )
    yield runtime
    runtime.engine.dispose()


@pytest.fixture
def api(admin_runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(admin_runtime)) as client:
        client.headers["authorization"] = f"Bearer {TOKEN}"
        yield client


def failed_letter(runtime: Runtime, n: int = 0) -> int:
    doc = json.loads(json.dumps(FEEDBACK))
    doc["data"]["contact"]["email"] = f"a{n}@example.org"
    [letter] = ingest_doc(runtime, doc, f"evt_{n}")
    with runtime.session_factory.begin() as session:
        session.execute(
            update(Letter)
            .where(Letter.id == letter.id)
            .values(status="failed", last_error="smtp: 550")
        )
    return letter.id


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Bearer",
        "Bearer wrong",
        f"Basic {TOKEN}",
        f"Bearer {TOKEN}x",
        f"Bearer {TOKEN[:-1]}",
        "Bearer " + "x" * 10_000,
    ],
)
def test_missing_or_wrong_token_is_401(api: TestClient, authorization: str | None) -> None:
    headers = {"authorization": authorization} if authorization else {}
    api.headers.pop("authorization")
    for method, path in (
        ("GET", "/admin/letters"),
        ("POST", "/admin/letters/cancel"),
        ("GET", "/admin/stats"),
    ):
        response = api.request(method, path, headers=headers, json={"ids": [1]})
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"


def test_the_admin_api_is_off_without_a_token(runtime: Runtime) -> None:
    with TestClient(create_app(runtime)) as client:
        response = client.get("/admin/letters", headers={"authorization": "Bearer anything"})
    assert response.status_code == 404 and "THANKLY_ADMIN_TOKEN" in response.json()["detail"]


def test_list_show_and_stats(api: TestClient, admin_runtime: Runtime) -> None:
    letter_id = failed_letter(admin_runtime)
    listed = api.get("/admin/letters", params={"status": "failed"}).json()
    assert [x["id"] for x in listed["letters"]] == [letter_id] and listed["more"] is False
    shown = api.get(f"/admin/letters/{letter_id}").json()
    assert shown["status"] == "failed" and shown["timeline"][0]["what"] == "planned"
    assert api.get("/admin/letters/999").status_code == 404
    assert api.get("/admin/stats").json()["stats"][0]["failed"] == 1


def test_replay_cancel_follow_the_same_rules_and_are_audited(
    api: TestClient, admin_runtime: Runtime
) -> None:
    first, second = failed_letter(admin_runtime, 1), failed_letter(admin_runtime, 2)
    dry = api.post("/admin/letters/replay", json={"status": "failed", "dry_run": True}).json()
    assert dry["dry_run"] is True and sorted(dry["done"]) == [first, second]
    assert {x.status for x in all_letters(admin_runtime)} == {"failed"}
    done = api.post("/admin/letters/replay", json={"ids": [first], "reason": "relay fixed"}).json()
    assert done["done"] == [first]
    again = api.post("/admin/letters/replay", json={"ids": [first]}).json()
    assert again["refused"] == {str(first): "still pending: it will be sent anyway"}
    cancelled = api.post("/admin/letters/cancel", json={"ids": [first, second]}).json()
    assert cancelled["done"] == [first]
    assert cancelled["refused"] == {str(second): "failed: only scheduled or queued letters"}
    with admin_runtime.session_factory() as session:
        entries = session.scalars(select(AuditEntry).order_by(AuditEntry.id)).all()
    assert [(e.action, e.letter_id, e.reason) for e in entries] == [
        ("replay", first, "relay fixed"),
        ("cancel", first, None),
    ]
    assert all(e.actor.startswith("admin-api") for e in entries)
    audit = api.get("/admin/audit", params={"letter_id": first}).json()["entries"]
    assert [e["action"] for e in audit] == ["replay", "cancel"]


def test_bad_requests_say_what_is_wrong(api: TestClient) -> None:
    assert api.post("/admin/letters/replay", json={}).status_code == 422
    assert api.post("/admin/letters/cancel", json={"ids": []}).status_code == 422
    naive = api.get("/admin/letters", params={"since": "2026-11-20T10:00:00"})
    assert naive.status_code == 422


def test_the_admin_api_is_in_the_openapi_document(api: TestClient) -> None:
    paths = api.get("/openapi.json").json()["paths"]
    assert {
        "/admin/letters",
        "/admin/letters/{letter_id}",
        "/admin/letters/replay",
        "/admin/letters/cancel",
        "/admin/letters/send-now",
        "/admin/stats",
        "/admin/audit",
    } <= set(paths)


def test_lists_are_newest_first_with_a_total(api: TestClient, admin_runtime: Runtime) -> None:
    ids = [failed_letter(admin_runtime, n) for n in range(3)]
    first = api.get("/admin/letters", params={"limit": 2}).json()
    assert [x["id"] for x in first["letters"]] == ids[:0:-1]
    assert (first["total"], first["page"], first["pages"], first["more"]) == (3, 1, 2, True)
    last = api.get("/admin/letters", params={"limit": 2, "page": 2}).json()
    assert [x["id"] for x in last["letters"]] == ids[:1] and last["more"] is False


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "valid"),
    [
        ("get", "/admin/letters", {"params": {"status": "faild"}}, "'failed'"),
        ("get", "/admin/letters", {"params": {"error_class": "tls"}}, "'connect'"),
        ("post", "/admin/letters/replay", {"json": {"status": "faild"}}, "'unknown'"),
        ("post", "/admin/letters/replay", {"json": {"ids": [1], "error_class": "x"}}, "'rcpt'"),
    ],
)
def test_a_typo_in_an_enumerated_value_is_422_with_the_valid_ones(
    api: TestClient, method: str, path: str, kwargs: dict[str, Any], valid: str
) -> None:
    response = api.request(method.upper(), path, **kwargs)
    assert response.status_code == 422
    assert valid in json.dumps(response.json()["detail"])
