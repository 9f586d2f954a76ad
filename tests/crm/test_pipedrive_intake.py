"""`POST /webhooks/pipedrive` as Pipedrive posts it: webhooks v2 bodies behind HTTP basic
auth, deduplicated on `meta.id`, both timestamp forms, answered before the API is asked,
then enriched through an imitation of Pipedrive's API that asserts every request."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import select

from tests.conftest import NOW
from tests.crm.pipedrive_api import RATE_LIMITED, TOKEN, UNAVAILABLE, PipedriveState, pipedrive_api
from tests.crm.steps import app_client, crm_runtime, inbox, ingest_through_failures
from tests.helpers import all_letters
from worker.clock import FixedClock
from worker.crm.pipedrive.mapping import plain_text, rated
from worker.crm.pipedrive.source import occurred_at
from worker.jobs import run_enqueued
from worker.models import Event, InboxStatus, LetterStatus
from worker.queue import RecordingDispatcher
from worker.runtime import Runtime

USER, PASSWORD = "thankly", "a-long-random-webhook-password"
FEEDBACK_FIELD = "d4de1c1518b4531717c676029a45911c340390a9"  # a custom field's API key
JSON = {"content-type": "application/json"}


def iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def basic(user: str = USER, password: str = PASSWORD) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {**JSON, "authorization": f"Basic {token}"}


@pytest.fixture
def crm() -> Iterator[tuple[str, PipedriveState]]:
    with pipedrive_api() as (url, state):
        state.deals["77"] = {
            "id": 77, "title": "Wdrożenie CRM", "value": 12500, "currency": "PLN",
            "status": "won", "owner_id": 9, "person_id": 5, "org_id": 3,
            "update_time": iso(NOW - timedelta(minutes=1)),
        }  # fmt: skip
        state.persons["5"] = {
            "id": 5, "name": "Zofia Nowak", "first_name": "Zofia", "last_name": "Nowak",
            "emails": [{"value": "biuro@nowak.example", "primary": False, "label": "work"},
                       {"value": "Zofia@Nowak.example", "primary": True, "label": "home"}],
        }  # fmt: skip
        state.users["9"] = {"id": 9, "name": "Piotr Zieliński", "email": "piotr@seller.example"}
        yield url, state


@pytest.fixture
def pd(
    tmp_path: Path,
    db_url: str,
    clock: FixedClock,
    dispatcher: RecordingDispatcher,
    crm: tuple[str, PipedriveState],
) -> Iterator[Runtime]:
    with crm_runtime(
        tmp_path,
        db_url,
        clock,
        dispatcher,
        pipedrive_webhook_user=USER,
        pipedrive_webhook_password=SecretStr(PASSWORD),
        pipedrive_token=SecretStr(TOKEN),
        pipedrive_api_base=crm[0],
        pipedrive_locale="pl",
        pipedrive_timezone="Europe/Warsaw",
        pipedrive_feedback_field=FEEDBACK_FIELD,
        pipedrive_referral_field="referral_name",
        pipedrive_feedback_activity_type="nps_call",
        pipedrive_referral_activity_type="referral",
        pipedrive_feedback_note_tag="#feedback",
        pipedrive_referral_note_tag="#referral",
    ) as runtime:
        yield runtime


@pytest.fixture
def pd_client(pd: Runtime) -> Iterator[TestClient]:
    with app_client(pd) as test_client:
        yield test_client


def webhook(
    meta_id: str, deal: int, status: str, previous: str | None, **meta: Any
) -> dict[str, Any]:
    """A deal `change` as webhooks v2 posts it: the whole deal, and what changed before."""
    return {
        "meta": {
            "action": "change", "entity": "deal", "version": "2.0", "id": meta_id,
            "entity_id": str(deal), "company_id": "12882925", "user_id": "9",
            "timestamp": iso(NOW - timedelta(minutes=1)), "type": "general", "attempt": 1,
            "host": "seller.pipedrive.com", "change_source": "app", **meta,
        },
        "data": {"id": deal, "title": "Wdrożenie CRM", "status": status, "value": 12500,
                 "currency": "PLN", "owner_id": 9, "person_id": 5, "stage_id": 4},
        "previous": None if previous is None else {"status": previous},
    }  # fmt: skip


def post(client: TestClient, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    response: httpx.Response = client.post(
        "/webhooks/pipedrive",
        content=json.dumps(body),
        headers=basic() if headers is None else headers,
    )
    return response


def test_a_won_deal_is_answered_at_once_then_read_through_the_api_and_planned(
    pd: Runtime,
    pd_client: TestClient,
    dispatcher: RecordingDispatcher,
    crm: tuple[str, PipedriveState],
) -> None:
    state = crm[1]
    response = post(pd_client, webhook("7d9a3c1e-0000-4000-8000-000000000001", 77, "won", "open"))
    assert response.status_code == 202, response.text
    assert state.calls == []  # the answer never waits for Pipedrive's API
    [row] = inbox(pd)
    assert (row.source, row.event_id) == (
        "pipedrive", "pd:12882925:7d9a3c1e-0000-4000-8000-000000000001",
    )  # fmt: skip

    done = run_enqueued(pd, list(dispatcher.sent))
    assert [outcome for _, _, outcome in done] == ["ingested"]
    assert [(c.method, c.path) for c in state.calls] == [
        ("GET", "/api/v2/deals/77"), ("GET", "/api/v2/persons/5"), ("GET", "/api/v1/users/9"),
    ]  # fmt: skip
    assert {c.headers["x-api-token"] for c in state.calls} == {TOKEN}
    assert all("api_token" not in c.query for c in state.calls)  # never in a URL

    [letter] = all_letters(pd)
    # The primary address, not the first; the connection's language.
    assert (letter.contact_email, letter.locale, letter.deal_id, letter.contact_id) == (
        "zofia@nowak.example", "pl", "77", "5",
    )  # fmt: skip
    with pd.session_factory() as session:
        event = session.scalars(select(Event)).one()
    data = event.payload["data"]
    assert data["owner"] == {"name": "Piotr Zieliński", "email": "piotr@seller.example"}
    assert (data["deal"]["amount"], data["deal"]["currency"]) == ("12500", "PLN")
    assert data["contact"]["timezone"] == "Europe/Warsaw"
    assert event.occurred_at == NOW - timedelta(minutes=1)


def test_meta_timestamp_is_accepted_as_iso_or_as_integer_seconds() -> None:
    seconds = int(NOW.timestamp())
    assert occurred_at(seconds) == NOW == occurred_at(str(seconds))
    assert occurred_at(NOW.isoformat().replace("+00:00", "Z")) == NOW
    assert occurred_at(NOW.replace(tzinfo=None).isoformat()) == NOW  # no zone: Pipedrive means UTC
    for bad in (True, None, "yesterday", [1]):
        with pytest.raises(ValueError):
            occurred_at(bad)


def test_an_integer_timestamp_is_stored_and_planned_like_an_iso_one(
    pd: Runtime, pd_client: TestClient, dispatcher: RecordingDispatcher
) -> None:
    stamp = int((NOW - timedelta(minutes=1)).timestamp())
    assert post(pd_client, webhook("101", 77, "won", "open", timestamp=stamp)).status_code == 202
    run_enqueued(pd, list(dispatcher.sent))
    with pd.session_factory() as session:
        assert session.scalars(select(Event.occurred_at)).one() == NOW - timedelta(minutes=1)


@pytest.mark.parametrize(
    "headers",
    [
        JSON,
        basic(password="wrong"),
        basic(user="admin"),
        {**JSON, "authorization": f"Bearer {PASSWORD}"},
        {**JSON, "authorization": "Basic !!not-base64!!"},
        {
            **JSON,
            "authorization": "Basic " + base64.b64encode(f"{USER}{PASSWORD}".encode()).decode(),
        },
    ],
    ids=["none", "wrong password", "wrong user", "bearer", "garbage", "no colon"],
)
def test_wrong_basic_auth_is_401_and_stores_nothing(
    pd: Runtime, pd_client: TestClient, headers: dict[str, str]
) -> None:
    response = post(pd_client, webhook("102", 77, "won", "open"), headers)
    assert response.status_code == 401
    assert inbox(pd) == []


def test_a_redelivery_of_the_same_meta_id_is_a_duplicate_and_one_letter(
    pd: Runtime, pd_client: TestClient, dispatcher: RecordingDispatcher
) -> None:
    assert post(pd_client, webhook("103", 77, "won", "open")).status_code == 202
    again = webhook("103", 77, "won", "open", attempt=2)
    assert post(pd_client, again).json()["status"] == "duplicate"
    run_enqueued(pd, list(dispatcher.sent))
    assert len(inbox(pd)) == 1 and len(all_letters(pd)) == 1


@pytest.mark.parametrize(
    "body",
    [
        webhook("104", 77, "won", None),  # a change that left the status alone
        {**webhook("105", 77, "won", "open"), "previous": {"title": "old"}},
        webhook("106", 77, "open", "open"),
        webhook("107", 77, "won", "open", entity="person"),
        webhook("108", 77, "won", "open", action="create"),
    ],
    ids=["no previous", "other field", "same status", "person", "create"],
)
def test_changes_thankly_does_not_act_on_are_acknowledged_and_not_stored(
    pd: Runtime, pd_client: TestClient, body: dict[str, Any]
) -> None:
    response = post(pd_client, body)
    assert (response.status_code, response.json()) == (200, {"status": "ignored"})
    assert inbox(pd) == []


def test_a_v1_body_or_a_missing_id_is_refused_with_the_reason(
    pd: Runtime, pd_client: TestClient
) -> None:
    v1 = {"v": 1, "meta": {"v": 1, "action": "updated", "object": "deal", "id": 5},
          "current": {"id": 77, "status": "won"}, "previous": {"status": "open"}}  # fmt: skip
    response = post(pd_client, v1)
    assert response.status_code == 422 and "version 2.0" in response.json()["error"]
    no_id = webhook("", 77, "won", "open")
    assert post(pd_client, no_id).status_code == 422
    bad_time = webhook("109", 77, "won", "open", timestamp="last tuesday")
    assert post(pd_client, bad_time).status_code == 422
    assert inbox(pd) == []


def test_lost_cancels_and_reopened_then_won_again_plans_anew(
    pd: Runtime,
    pd_client: TestClient,
    dispatcher: RecordingDispatcher,
    crm: tuple[str, PipedriveState],
) -> None:
    post(pd_client, webhook("110", 77, "won", "open"))
    run_enqueued(pd, list(dispatcher.sent))
    calls = len(crm[1].calls)
    dispatcher.sent.clear()
    post(pd_client, webhook("111", 77, "open", "won", timestamp=iso(NOW - timedelta(seconds=50))))
    run_enqueued(pd, list(dispatcher.sent))
    assert len(crm[1].calls) == calls  # a reopen needs only the deal id
    assert [x.status for x in all_letters(pd)] == [LetterStatus.CANCELLED]
    dispatcher.sent.clear()
    post(pd_client, webhook("112", 77, "won", "open", timestamp=iso(NOW - timedelta(seconds=40))))
    post(pd_client, webhook("113", 77, "lost", "won", timestamp=iso(NOW - timedelta(seconds=30))))
    run_enqueued(pd, list(dispatcher.sent))
    assert [x.status for x in all_letters(pd)] == [LetterStatus.CANCELLED] * 2


def test_a_429_storm_ends_with_the_letter_planned_and_nothing_parked(
    pd: Runtime, pd_client: TestClient, clock: FixedClock, crm: tuple[str, PipedriveState]
) -> None:
    crm[1].failures = [RATE_LIMITED] * 5 + [UNAVAILABLE] * 2
    post(pd_client, webhook("114", 77, "won", "open"))
    [row] = inbox(pd)
    outcomes = ingest_through_failures(pd, clock, row.id)
    assert outcomes[-1] == "ingested" and "retry" in outcomes
    assert [x.status for x in all_letters(pd)] == [LetterStatus.SCHEDULED]


def test_a_person_without_an_address_is_parked_with_the_reason(
    pd: Runtime,
    pd_client: TestClient,
    dispatcher: RecordingDispatcher,
    crm: tuple[str, PipedriveState],
) -> None:
    crm[1].persons["5"]["emails"] = []
    post(pd_client, webhook("115", 77, "won", "open"))
    run_enqueued(pd, list(dispatcher.sent))
    [row] = inbox(pd)
    assert row.status == InboxStatus.FAILED
    assert "person 5 has no email address" in (row.error or "")
    assert all_letters(pd) == []


def test_without_pipedrive_configured_the_url_says_so(client: TestClient, runtime: Runtime) -> None:
    response = client.post("/webhooks/pipedrive", content=b"{}", headers=basic())
    assert response.status_code == 404
    assert "THANKLY_PIPEDRIVE_WEBHOOK_USER" in response.json()["error"]
    assert inbox(runtime) == []


def test_configured_deal_fields_become_feedback_and_referrals(
    pd: Runtime, pd_client: TestClient, dispatcher: RecordingDispatcher
) -> None:
    rated = webhook("120", 77, "won", None)
    rated["data"]["custom_fields"] = {FEEDBACK_FIELD: {"type": "double", "value": 4}}
    rated["previous"] = {"custom_fields": {FEEDBACK_FIELD: None}}
    referred = webhook("121", 77, "won", None)
    referred["data"]["custom_fields"] = {"referral_name": {"type": "varchar", "value": "Jan Nowak"}}
    referred["previous"] = {"custom_fields": {"referral_name": {"type": "varchar", "value": ""}}}
    unchanged = webhook("122", 77, "won", None)
    unchanged["data"]["custom_fields"] = {FEEDBACK_FIELD: {"type": "double", "value": 4}}
    unchanged["previous"] = {"title": "renamed"}  # the rating was there before: no event
    assert post(pd_client, rated).status_code == 202
    assert post(pd_client, referred).status_code == 202
    assert post(pd_client, unchanged).json() == {"status": "ignored"}
    run_enqueued(pd, list(dispatcher.sent))
    with pd.session_factory() as session:
        events = {e.type: e.payload["data"] for e in session.scalars(select(Event))}
    assert events["feedback.logged"]["feedback"]["rating"] == 4
    assert events["feedback.logged"]["contact"]["email"] == "zofia@nowak.example"
    assert events["referral.made"]["referral"]["referred_name"] == "Jan Nowak"
    assert sorted(x.letter for x in all_letters(pd)) == ["feedback_negative", "referral_made"]


def other_webhook(
    meta_id: str, entity: str, action: str, data: dict[str, Any], previous: Any = None
) -> dict[str, Any]:
    body = webhook(meta_id, 77, "won", None, entity=entity, action=action)
    body["data"], body["previous"] = data, previous
    return body


def test_done_activities_and_tagged_notes_become_feedback_and_referrals(
    pd: Runtime,
    pd_client: TestClient,
    dispatcher: RecordingDispatcher,
    crm: tuple[str, PipedriveState],
) -> None:
    address = {"value": "jan@wisniewski.example", "primary": True}
    crm[1].persons["6"] = {
        "id": 6,
        "name": "Jan Wiśniewski",
        "first_name": "Jan",
        "emails": [address],
    }
    bodies = [
        # A feedback call logged as done at once: subject starts with the rating.
        other_webhook(
            "130",
            "activity",
            "create",
            {
                "id": 501,
                "type": "nps_call",
                "done": True,
                "subject": "9/10 – bardzo dobrze",
                "deal_id": 77,
                "note": "<p>Szybka <b>dostawa</b></p>",
                "participants": [{"person_id": 5, "primary": True}],
            },
        ),
        # A referral activity marked done later, for a person without a deal.
        other_webhook(
            "131",
            "activity",
            "change",
            {
                "id": 502,
                "type": "referral",
                "done": True,
                "subject": "Anna Zielińska",
                "person_id": 6,
            },
            {"done": False},
        ),
        other_webhook(
            "132",
            "note",
            "create",
            {"id": 601, "deal_id": 77, "content": "<p>#feedback 3 Dostawa spóźniona</p>"},
        ),
        other_webhook(
            "133", "note", "create", {"id": 602, "person_id": 6, "content": "#referral Marek Nowak"}
        ),
    ]
    for body in bodies:
        assert post(pd_client, body).status_code == 202, body["meta"]["id"]
    ignored = [
        other_webhook("134", "activity", "create", {"id": 503, "type": "nps_call", "done": False}),
        other_webhook(
            "135",
            "activity",
            "change",
            {"id": 501, "type": "nps_call", "done": True, "subject": "9"},
            {"subject": "8"},
        ),  # done before: not news
        other_webhook("136", "activity", "create", {"id": 504, "type": "call", "done": True}),
        other_webhook("137", "note", "create", {"id": 603, "content": "Call back on Monday"}),
        other_webhook("138", "note", "change", {"id": 602, "content": "#referral Marek"}),
    ]
    for body in ignored:
        assert post(pd_client, body).json() == {"status": "ignored"}, body["meta"]["id"]
    run_enqueued(pd, list(dispatcher.sent))
    with pd.session_factory() as session:
        events = {e.external_id: e.payload["data"] for e in session.scalars(select(Event))}
    call, referral, note, tagged = (events[f"pd:12882925:{i}"] for i in (130, 131, 132, 133))
    assert call["feedback"] == {"id": "pd-130", "rating": 9, "text": "Szybka dostawa"}
    assert call["contact"]["email"] == "zofia@nowak.example" and call["deal"]["id"] == "77"
    assert referral["referral"]["referred_name"] == "Anna Zielińska"
    assert referral["contact"]["email"] == "jan@wisniewski.example" and referral["deal"] is None
    assert note["feedback"] == {"id": "pd-132", "rating": 3, "text": "Dostawa spóźniona"}
    assert tagged["referral"]["referred_name"] == "Marek Nowak"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("9/10 – great", (9, "great")),
        ("3 Delivery was late", (3, "Delivery was late")),
        ("7", (7, "")),
        ("2.5 stars", (None, "2.5 stars")),
        ("300 units", (None, "300 units")),
        ("Great service", (None, "Great service")),
    ],
)
def test_a_leading_rating_is_read_and_nothing_else(text: str, expected: tuple[Any, str]) -> None:
    assert rated(text) == expected


def test_note_html_becomes_plain_text() -> None:
    html = "<p>Szybka&nbsp;<b>dostawa</b><br>i <script>x</script>&lt;ok&gt;</p><div>Dzięki</div>"
    assert plain_text(html) == "Szybka dostawa\ni x<ok>\nDzięki"
