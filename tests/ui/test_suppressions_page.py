"""The suppressions page: the list, adding and lifting (admin only, audited)."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from tests.conftest import SAMPLES
from tests.helpers import ingest_doc
from tests.ui.conftest import ORIGIN, client_for, csrf_of, post_form
from worker import suppressions
from worker.clock import FixedClock
from worker.models import AuditEntry, Letter, LetterStatus, Suppression
from worker.runtime import Runtime

PAGE = "/ui/suppressions"


def listed(runtime: Runtime) -> list[str]:
    with runtime.session_factory() as session:
        return list(session.scalars(select(Suppression.email).order_by(Suppression.id)))


def audits(runtime: Runtime) -> list[AuditEntry]:
    with runtime.session_factory() as session:
        return list(session.scalars(select(AuditEntry).order_by(AuditEntry.id)))


def suppress(runtime: Runtime, email: str, reason: str = "asked by phone") -> None:
    suppressions.add(runtime.session_factory, email, reason, runtime.clock.now(), actor="cli")


def test_signed_out_goes_to_login(ui_runtime: Runtime) -> None:
    with client_for(ui_runtime) as client:
        response = client.get(PAGE, follow_redirects=False)
        assert response.status_code == 303
        assert response.headers["location"].startswith("/ui/login?next=")
        # A POST without a session signs in first, and changes nothing.
        posted = client.post(
            PAGE,
            data={"email": "a@example.org", "reason": "x"},
            headers={"origin": ORIGIN},
            follow_redirects=False,
        )
        assert posted.status_code == 303
    assert listed(ui_runtime) == []


def test_reader_sees_the_list_newest_first_and_no_forms(
    ui_runtime: Runtime, reader: TestClient, clock: FixedClock
) -> None:
    suppress(ui_runtime, "old@example.org", "bounced <script>alert(1)</script>")
    clock.set(clock.now() + timedelta(hours=1))
    suppress(ui_runtime, "new@example.org")
    html = reader.get(PAGE).text
    assert "2 suppressed addresses" in html
    assert html.index("new@example.org") < html.index("old@example.org")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>" not in html
    assert 'action="/ui/suppressions/lift"' not in html
    assert 'action="/ui/suppressions"' not in html.split("</form>", 2)[-1]
    assert "Read-only" in html

    only = reader.get(PAGE, params={"contact": "NEW@example.org"}).text
    assert "1 suppressed address" in only and "old@example.org" not in only
    bad = reader.get(PAGE, params={"contact": "not an address"})
    assert bad.status_code == 422 and "not a valid email address" in bad.text


def test_admin_adds_an_address_audited(ui_runtime: Runtime, admin: TestClient) -> None:
    doc = json.loads((SAMPLES / "deal_closed.en.json").read_text())
    doc["data"]["contact"]["email"] = "anna@example.org"
    letters = ingest_doc(ui_runtime, doc, "evt_1")
    assert letters and letters[0].status == LetterStatus.SCHEDULED

    response = post_form(
        admin, PAGE, PAGE, email="Anna@Example.org", reason="asked us by phone <b>now</b>"
    )
    assert response.status_code == 303
    assert response.headers["location"].startswith("/ui/suppressions?done=added")
    assert listed(ui_runtime) == ["anna@example.org"]
    [entry] = audits(ui_runtime)
    assert entry.action == "suppress" and entry.email == "anna@example.org"
    assert entry.actor.startswith("dashboard") and entry.reason == "asked us by phone <b>now</b>"
    with ui_runtime.session_factory() as session:
        assert session.get(Letter, letters[0].id).status == LetterStatus.SUPPRESSED  # type: ignore[union-attr]

    html = admin.get(response.headers["location"]).text
    assert "anna@example.org gets no more letters; 1 pending letter(s)" in html
    assert "asked us by phone &lt;b&gt;now&lt;/b&gt;" in html

    again = post_form(admin, PAGE, PAGE, email="anna@example.org", reason="again")
    assert "done=already" in again.headers["location"]
    assert len(audits(ui_runtime)) == 1


def test_admin_lifts_an_address_audited(ui_runtime: Runtime, admin: TestClient) -> None:
    suppress(ui_runtime, "anna@example.org")
    response = post_form(admin, f"{PAGE}/lift", PAGE, email="anna@example.org", reason="ok")
    assert response.status_code == 303
    assert listed(ui_runtime) == []
    entry = audits(ui_runtime)[-1]
    assert entry.action == "unsuppress" and entry.actor.startswith("dashboard")
    assert entry.reason == "ok"
    html = admin.get(response.headers["location"]).text
    assert "anna@example.org is off the list" in html
    # A crafted link cannot claim what the list does not show.
    forged = admin.get(PAGE, params={"done": "added", "email": "anna@example.org"}).text
    assert "anna@example.org gets no more letters" not in forged


def test_refusals_are_shown_on_the_page(ui_runtime: Runtime, admin: TestClient) -> None:
    bad = post_form(admin, PAGE, PAGE, email="not-an-address", reason="x")
    assert bad.status_code == 422
    assert "Not added" in bad.text and "not a valid email address" in bad.text
    assert 'value="not-an-address"' in bad.text  # kept, to correct
    no_reason = post_form(admin, PAGE, PAGE, email="a@example.org", reason="  ")
    assert no_reason.status_code == 422 and "give a reason" in no_reason.text
    missing = post_form(admin, f"{PAGE}/lift", PAGE, email="a@example.org", reason="x")
    assert missing.status_code == 404
    assert "a@example.org is not on the suppression list" in missing.text
    assert listed(ui_runtime) == [] and audits(ui_runtime) == []


@pytest.mark.parametrize("path", [PAGE, f"{PAGE}/lift"])
def test_reader_is_refused(ui_runtime: Runtime, reader: TestClient, path: str) -> None:
    suppress(ui_runtime, "anna@example.org")
    response = post_form(reader, path, PAGE, email="anna@example.org", reason="x")
    assert response.status_code == 403 and "read-only" in response.text
    assert listed(ui_runtime) == ["anna@example.org"] and len(audits(ui_runtime)) == 1


@pytest.mark.parametrize("path", [PAGE, f"{PAGE}/lift"])
def test_csrf_and_origin(ui_runtime: Runtime, admin: TestClient, path: str) -> None:
    suppress(ui_runtime, "anna@example.org")
    token = csrf_of(admin.get(PAGE).text)
    fields = {"email": "anna@example.org", "reason": "x"}
    for data, origin in (
        (fields, ORIGIN),  # no token
        (fields | {"csrf": "forged"}, ORIGIN),
        (fields | {"csrf": token}, "https://evil.example"),
    ):
        response = admin.post(path, data=data, headers={"origin": origin}, follow_redirects=False)
        assert response.status_code == 403, (data, origin)
    assert listed(ui_runtime) == ["anna@example.org"] and len(audits(ui_runtime)) == 1


def test_forms_are_labelled(ui_runtime: Runtime, admin: TestClient) -> None:
    suppress(ui_runtime, "anna@example.org")
    html = admin.get(PAGE).text
    for field in re.findall(r'<input id="([^"]+)"', html):
        assert f'for="{field}"' in html
    with ui_runtime.session_factory() as session:
        assert session.scalar(select(func.count()).select_from(Suppression)) == 1
