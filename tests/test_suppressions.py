"""Suppressions by hand: list, add and lift, from the CLI and the admin API, audited."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import func, select

from tests.conftest import make_settings
from tests.helpers import all_letters, event_doc, ingest_doc
from worker.clock import FixedClock
from worker.http.app import create_app
from worker.models import AuditEntry, CrmActivity, LetterStatus, Suppression
from worker.queue import RecordingDispatcher
from worker.runtime import Runtime, build_runtime

TOKEN = "adm-suppressions-token-0123456789abcdef"


def feedback(email: str, when: str = "2026-11-20T10:00:00Z") -> dict[str, Any]:
    doc = event_doc("feedback.logged", email)
    doc["timestamp"] = when
    return doc


def audit_entries(runtime: Runtime) -> list[AuditEntry]:
    with runtime.session_factory() as session:
        return list(session.scalars(select(AuditEntry).order_by(AuditEntry.id)))


def suppressed_emails(runtime: Runtime) -> list[str]:
    with runtime.session_factory() as session:
        return sorted(session.scalars(select(Suppression.email)))


def statuses(runtime: Runtime) -> list[tuple[str, str | None]]:
    return [(x.status, x.status_reason) for x in all_letters(runtime)]


# --- the CLI ---------------------------------------------------------------------------


def test_add_normalises_suppresses_pending_letters_audits_and_does_not_tell_the_crm(
    runtime: Runtime, cli: Any
) -> None:
    [letter] = ingest_doc(runtime, feedback("anna@example.org"), "evt_1")
    assert letter.status == LetterStatus.SCHEDULED
    result = cli("suppressions", "add", " Anna@Example.ORG ", "--reason", "asked by phone")
    assert result.exit_code == 0, result.stderr
    assert f"suppressed anna@example.org; pending letters suppressed: #{letter.id}" in (
        result.stdout
    )
    assert suppressed_emails(runtime) == ["anna@example.org"]
    [(status, why)] = statuses(runtime)
    assert status == LetterStatus.SUPPRESSED and why is not None and "asked by phone" in why
    [entry] = audit_entries(runtime)
    assert (entry.action, entry.email, entry.letter_id, entry.reason) == (
        "suppress",
        "anna@example.org",
        None,
        "asked by phone",
    )
    assert entry.actor.endswith("(cli)") and entry.details["suppressed_letters"] == [letter.id]
    with runtime.session_factory() as session:  # a manual add is not the recipient's click
        assert not session.scalar(select(func.count()).select_from(CrmActivity))
    # And the next event for the address plans a suppressed letter.
    [later] = ingest_doc(runtime, feedback("anna@example.org", "2026-12-20T10:00:00Z"), "evt_2")
    assert later.status == LetterStatus.SUPPRESSED


def test_adding_twice_changes_nothing_the_second_time(runtime: Runtime, cli: Any) -> None:
    assert cli("suppressions", "add", "anna@example.org", "--reason", "first").exit_code == 0
    again = cli("suppressions", "add", "ANNA@example.org", "--reason", "second", "--json")
    assert again.exit_code == 0
    answer = json.loads(again.stdout)
    assert answer["added"] is False and answer["reason"] == "first"
    assert len(audit_entries(runtime)) == 1


def test_remove_lifts_for_later_events_and_leaves_suppressed_letters_alone(
    runtime: Runtime, cli: Any
) -> None:
    ingest_doc(runtime, feedback("anna@example.org"), "evt_1")
    cli("suppressions", "add", "anna@example.org", "--reason", "asked by phone")
    result = cli("suppressions", "remove", "Anna@example.org", "--reason", "asked again")
    assert result.exit_code == 0, result.stderr
    assert "removed anna@example.org from the suppression list" in result.stdout
    assert "later events plan letters for it again" in result.stdout
    assert "1 letter(s) already suppressed stay suppressed" in result.stdout
    assert suppressed_emails(runtime) == []
    assert [s for s, _ in statuses(runtime)] == [LetterStatus.SUPPRESSED]
    [later] = ingest_doc(runtime, feedback("anna@example.org", "2026-12-20T10:00:00Z"), "evt_2")
    assert later.status == LetterStatus.SCHEDULED
    lifted = audit_entries(runtime)[-1]
    assert (lifted.action, lifted.email, lifted.reason) == (
        "unsuppress",
        "anna@example.org",
        "asked again",
    )
    assert lifted.details["was_reason"] == "asked by phone"


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["remove", "nobody@example.org", "--reason", "x"], 1, "is not on the suppression list"),
        (["add", "not-an-email", "--reason", "x"], 2, "'not-an-email' is not a valid email"),
        (["add", "anna@example.org", "--reason", "  "], 2, "give a reason"),
        (["list", "--contact", "a@b@c"], 2, "--contact: 'a@b@c' is not a valid email"),
    ],
)
def test_refusals_are_one_line_with_the_right_exit_code(
    runtime: Runtime, cli: Any, args: list[str], code: int, message: str
) -> None:
    result = cli("suppressions", *args)
    assert result.exit_code == code and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert audit_entries(runtime) == [] and suppressed_emails(runtime) == []


def test_list_shows_newest_first_with_who_or_which_event(
    runtime: Runtime, clock: FixedClock, cli: Any
) -> None:
    from datetime import timedelta

    unsubscribed = event_doc("contact.unsubscribed", "olga@example.org")
    ingest_doc(runtime, unsubscribed, "evt_unsub")
    clock.set(clock.now() + timedelta(hours=1))
    cli("suppressions", "add", "anna@example.org", "--reason", "asked by phone")
    rows = json.loads(cli("suppressions", "list", "--json").stdout)
    assert [(r["email"], r["reason"]) for r in rows] == [
        ("anna@example.org", "asked by phone"),
        ("olga@example.org", "unsubscribed"),
    ]
    assert rows[1]["by"] == "event evt_unsub" and rows[0]["by"].endswith("(cli)")
    only = json.loads(cli("suppressions", "list", "--contact", "OLGA@example.org", "--json").stdout)
    assert [r["email"] for r in only] == ["olga@example.org"]
    table = cli("suppressions", "list")
    assert table.exit_code == 0 and "2 suppressed address(es)" in table.stdout
    assert all(len(line) <= 80 for line in table.stdout.splitlines())


# --- the admin API ---------------------------------------------------------------------


@pytest.fixture
def api(tmp_path: Path, db_url: str, clock: FixedClock) -> Iterator[tuple[TestClient, Runtime]]:
    runtime = build_runtime(
        make_settings(tmp_path, db_url, admin_token=SecretStr(TOKEN)),
        clock=clock,
        dispatcher=RecordingDispatcher(),
    )
    with TestClient(create_app(runtime)) as client:
        client.headers["authorization"] = f"Bearer {TOKEN}"
        yield client, runtime
    runtime.engine.dispose()


def test_api_adds_lists_and_lifts_audited_as_the_api(
    api: tuple[TestClient, Runtime],
) -> None:
    client, runtime = api
    [letter] = ingest_doc(runtime, feedback("anna@example.org"), "evt_1")
    added = client.post(
        "/admin/suppressions", json={"email": "Anna@Example.org", "reason": "GDPR request"}
    )
    assert added.status_code == 201
    assert added.json()["suppressed_letters"] == [letter.id]
    again = client.post("/admin/suppressions", json={"email": "anna@example.org", "reason": "x"})
    assert again.status_code == 200 and again.json()["added"] is False
    listed = client.get("/admin/suppressions").json()
    assert listed["total"] == 1 and listed["suppressions"][0]["email"] == "anna@example.org"
    assert listed["suppressions"][0]["by"] == "admin-api (testclient)"

    gone = client.request(
        "DELETE", "/admin/suppressions/anna@example.org", json={"reason": "withdrawn"}
    )
    assert gone.status_code == 200 and gone.json()["letters_staying_suppressed"] == 1
    assert client.get("/admin/suppressions").json()["total"] == 0
    assert [(e.action, e.actor, e.reason) for e in audit_entries(runtime)] == [
        ("suppress", "admin-api (testclient)", "GDPR request"),
        ("unsuppress", "admin-api (testclient)", "withdrawn"),
    ]


def test_api_takes_the_reason_from_the_query_too(api: tuple[TestClient, Runtime]) -> None:
    client, runtime = api
    client.post("/admin/suppressions", json={"email": "anna@example.org", "reason": "x"})
    gone = client.delete("/admin/suppressions/ANNA@example.org?reason=typo")
    assert gone.status_code == 200 and audit_entries(runtime)[-1].reason == "typo"


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "detail"),
    [
        ("DELETE", "/admin/suppressions/nobody@example.org?reason=x", None, 404, "is not on"),
        ("DELETE", "/admin/suppressions/anna@example.org", None, 422, "give a reason"),
        ("POST", "/admin/suppressions", {"email": "nope", "reason": "x"}, 422, "not a valid"),
        ("GET", "/admin/suppressions?contact=a@b@c", None, 422, "not a valid email"),
    ],
)
def test_api_refusals(
    api: tuple[TestClient, Runtime],
    method: str,
    path: str,
    body: dict[str, str] | None,
    status: int,
    detail: str,
) -> None:
    client, runtime = api
    answer = client.request(method, path, json=body)
    assert answer.status_code == status and detail in answer.json()["detail"]
    assert audit_entries(runtime) == []


def test_api_needs_the_token(api: tuple[TestClient, Runtime]) -> None:
    client, runtime = api
    del client.headers["authorization"]
    for method, path in (
        ("GET", "/admin/suppressions"),
        ("POST", "/admin/suppressions"),
        ("DELETE", "/admin/suppressions/anna@example.org?reason=x"),
    ):
        assert (
            client.request(method, path, json={"email": "a@b.org", "reason": "x"}).status_code
            == 401
        )
    assert suppressed_emails(runtime) == []


def test_api_audit_log_answers_for_one_address(api: tuple[TestClient, Runtime]) -> None:
    client, _ = api
    client.post("/admin/suppressions", json={"email": "anna@example.org", "reason": "GDPR"})
    client.post("/admin/suppressions", json={"email": "olga@example.org", "reason": "bounce"})
    entries = client.get("/admin/audit", params={"email": "Anna@Example.org"}).json()["entries"]
    assert [(e["email"], e["action"], e["reason"]) for e in entries] == [
        ("anna@example.org", "suppress", "GDPR")
    ]
    assert len(client.get("/admin/audit").json()["entries"]) == 2
