"""`POST /webhooks/hubspot` as HubSpot posts it: signed batches (v3, millisecond timestamp,
the public URI with its query), deduplicated on HubSpot's composite key, enriched through
an imitation of HubSpot's API that asserts every request, and never parked by a 429."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import select

from tests.conftest import NOW
from tests.crm.hubspot_api import RATE_LIMITED, TOKEN, UNAVAILABLE, HubSpotState, hubspot_api
from tests.crm.steps import app_client, crm_runtime, inbox, ingest_through_failures
from tests.helpers import all_letters
from worker.clock import FixedClock
from worker.crm.hubspot.source import signature, signed_uri
from worker.crm.rate_budget import RateBudget
from worker.intake.sources import Refused
from worker.jobs import run_enqueued
from worker.models import InboxStatus, LetterStatus
from worker.queue import RecordingDispatcher
from worker.retry import CallError
from worker.runtime import Runtime

SECRET = "hubspot-client-secret-1"
PUBLIC = "https://thankly.example"
NOW_MS = int(NOW.timestamp() * 1000)
JSON = {"content-type": "application/json"}


@pytest.fixture
def crm() -> Iterator[tuple[str, HubSpotState]]:
    with hubspot_api() as (url, state):
        state.contacts["201"] = {
            "email": "Katrin.Mueller@example.de",
            "firstname": "Katrin",
            "lastname": "Müller",
            "hs_language": "de",
            "hs_timezone": "europe_slash_berlin",
        }
        state.contacts["202"] = {"email": None, "firstname": "No", "lastname": "Email"}
        state.owners["77"] = {"id": "77", "email": "jonas@seller.example",
                              "firstName": "Jonas", "lastName": "Becker"}  # fmt: skip
        state.add_deal(
            "9001", ["202", "201"], dealname="Jahreslizenz", amount="3600",
            deal_currency_code="EUR", hubspot_owner_id="77", dealstage="closedwon",
        )  # fmt: skip
        yield url, state


@pytest.fixture
def hub(
    tmp_path: Path,
    db_url: str,
    clock: FixedClock,
    dispatcher: RecordingDispatcher,
    crm: tuple[str, HubSpotState],
) -> Iterator[Runtime]:
    with crm_runtime(
        tmp_path,
        db_url,
        clock,
        dispatcher,
        public_url=PUBLIC,
        hubspot_client_secret=SecretStr(SECRET),
        hubspot_token=SecretStr(TOKEN),
        hubspot_api_base=crm[0],
        hubspot_won_stages="closedwon, 1234567",
        hubspot_feedback_property="nps_score",
        hubspot_feedback_text_property="nps_comment",
        hubspot_referral_property="referred_friend",
    ) as runtime:
        yield runtime


@pytest.fixture
def hub_client(hub: Runtime) -> Iterator[TestClient]:
    with app_client(hub) as test_client:
        yield test_client


def change(event_id: int, deal: str, stage: str, **extra: Any) -> dict[str, Any]:
    return {
        "eventId": event_id,
        "subscriptionId": 4001,
        "portalId": 62515,
        "appId": 1160452,
        "occurredAt": NOW_MS - 60_000,
        "subscriptionType": "deal.propertyChange",
        "attemptNumber": 0,
        "objectId": int(deal),
        "propertyName": "dealstage",
        "propertyValue": stage,
        "changeSource": "CRM_UI",
        **extra,
    }


def post(
    client: TestClient,
    batch: list[dict[str, Any]],
    target: str = "/webhooks/hubspot",
    *,
    secret: str = SECRET,
    stamp: int = NOW_MS,
    uri: str | None = None,
) -> httpx.Response:
    body = json.dumps(batch).encode()
    signed = uri if uri is not None else signed_uri(PUBLIC, target)
    headers = {
        **JSON,
        "X-HubSpot-Signature-v3": signature(secret, "POST", signed, body, str(stamp)),
        "X-HubSpot-Request-Timestamp": str(stamp),
    }
    response: httpx.Response = client.post(target, content=body, headers=headers)
    return response


def test_the_signed_uri_decodes_what_hubspot_decodes() -> None:
    assert (
        signed_uri("https://t.example/", "/webhooks/hubspot?next=%2Fa%3Fb%3Dc&who=%40me%2C%20x")
        == "https://t.example/webhooks/hubspot?next=/a?b%3Dc&who=@me,%20x"
    )


def test_a_signed_batch_with_a_query_string_is_stored_one_row_per_stage_change(
    hub: Runtime, hub_client: TestClient
) -> None:
    batch = [
        change(1, "9001", "closedwon"),
        change(2, "9002", "closedlost"),
        change(3, "9003", "1234567", subscriptionType="object.propertyChange", objectTypeId="0-3"),
        change(4, "9004", "closedwon", propertyName="amount", propertyValue="10"),  # ignored
    ]
    response = post(hub_client, batch, "/webhooks/hubspot?portal=62515&from=a%3Ab")
    assert response.status_code == 202, response.text
    assert response.json()["new"] == 3
    rows = inbox(hub)
    assert [r.event_id for r in rows] == [
        f"hs:62515:4001:900{i}:{i}:{NOW_MS - 60_000}" for i in (1, 2, 3)
    ]
    assert all(r.source == "hubspot" for r in rows)


@pytest.mark.parametrize(
    "variant",
    ["wrong secret", "stale", "seconds", "unsigned", "tampered", "undecoded uri", "other host"],
)
def test_a_request_hubspot_did_not_sign_is_401_and_stores_nothing(
    hub: Runtime, hub_client: TestClient, variant: str
) -> None:
    batch = [change(1, "9001", "closedwon")]
    target = "/webhooks/hubspot?from=a%3Ab"
    variants: dict[str, dict[str, Any]] = {
        "wrong secret": {"secret": "another-secret"},
        "stale": {"stamp": NOW_MS - 5 * 60_000 - 1},
        "seconds": {"stamp": NOW_MS // 1000},
        "undecoded uri": {"uri": PUBLIC + target},
        "other host": {"uri": "http://127.0.0.1:8000/webhooks/hubspot?from=a:b"},
    }
    kwargs = variants.get(variant, {})
    if variant == "unsigned":
        response = hub_client.post(target, content=json.dumps(batch), headers=JSON)
    elif variant == "tampered":
        body = json.dumps(batch).encode()
        stamp = str(NOW_MS)
        headers = {
            **JSON,
            "X-HubSpot-Signature-v3": signature(
                SECRET, "POST", signed_uri(PUBLIC, target), body, stamp
            ),
            "X-HubSpot-Request-Timestamp": stamp,
        }
        response = hub_client.post(target, content=body.replace(b"9001", b"9009"), headers=headers)
    else:
        response = post(hub_client, batch, target, **kwargs)
    assert response.status_code == 401
    assert inbox(hub) == []


def test_a_retried_batch_never_makes_a_second_letter(
    hub: Runtime, hub_client: TestClient, dispatcher: RecordingDispatcher
) -> None:
    batch = [change(1, "9001", "closedwon")]
    assert post(hub_client, batch).status_code == 202
    assert post(hub_client, batch).json()["status"] == "duplicate"
    # HubSpot's own retry: the same event with the next attemptNumber, signed anew.
    retried = [change(1, "9001", "closedwon", attemptNumber=1)]
    assert post(hub_client, retried).json()["status"] == "duplicate"
    run_enqueued(hub, list(dispatcher.sent))
    assert len(inbox(hub)) == 1 and len(all_letters(hub)) == 1


def test_nothing_to_act_on_is_acknowledged_and_not_stored(
    hub: Runtime, hub_client: TestClient
) -> None:
    batch = [change(5, "9005", "closedwon", propertyName="amount", propertyValue="1")]
    response = post(hub_client, batch)
    assert (response.status_code, response.json()) == (200, {"status": "ignored"})
    assert inbox(hub) == []


def test_a_won_deal_is_read_through_the_api_and_planned(
    hub: Runtime,
    hub_client: TestClient,
    dispatcher: RecordingDispatcher,
    crm: tuple[str, HubSpotState],
) -> None:
    state = crm[1]
    post(hub_client, [change(1, "9001", "closedwon")])
    done = run_enqueued(hub, list(dispatcher.sent))
    assert [outcome for _, _, outcome in done] == ["ingested"]

    deal, batch_read, owner = state.calls
    assert (deal.method, deal.path) == ("GET", "/crm/v3/objects/deals/9001")
    assert deal.query["associations"] == ["contacts"]
    assert set(deal.query["properties"][0].split(",")) >= {
        "dealname", "amount", "deal_currency_code", "hubspot_owner_id",
    }  # fmt: skip
    assert (batch_read.method, batch_read.path) == ("POST", "/crm/v3/objects/contacts/batch/read")
    assert batch_read.body["inputs"] == [{"id": "202"}, {"id": "201"}]
    assert {"email", "firstname", "lastname", "hs_language"} <= set(batch_read.body["properties"])
    assert (owner.method, owner.path) == ("GET", "/crm/v3/owners/77")
    assert {c.authorization for c in state.calls} == {f"Bearer {TOKEN}"}

    [letter] = all_letters(hub)
    # The first associated contact with an email (202 has none), its language and zone.
    assert (letter.contact_email, letter.locale, letter.deal_id) == (
        "katrin.mueller@example.de", "de", "9001",
    )  # fmt: skip
    with hub.session_factory() as session:
        from worker.models import Event

        payload = session.scalars(select(Event.payload)).one()
    assert payload["data"]["contact"]["timezone"] == "Europe/Berlin"
    assert payload["data"]["owner"] == {"name": "Jonas Becker", "email": "jonas@seller.example"}
    assert (
        payload["data"]["deal"]["amount"] == "3600" and payload["data"]["deal"]["currency"] == "EUR"
    )


def test_a_429_storm_ends_with_the_letter_planned_and_nothing_parked(
    hub: Runtime,
    hub_client: TestClient,
    clock: FixedClock,
    crm: tuple[str, HubSpotState],
) -> None:
    state = crm[1]
    state.failures = [RATE_LIMITED] * 5 + [UNAVAILABLE] * 2
    post(hub_client, [change(1, "9001", "closedwon")])
    [row] = inbox(hub)
    outcomes = ingest_through_failures(hub, clock, row.id)
    assert outcomes[-1] == "ingested" and "retry" in outcomes
    assert [x.status for x in all_letters(hub)] == [LetterStatus.SCHEDULED]


def test_a_lost_deal_cancels_its_letter_without_asking_the_api(
    hub: Runtime,
    hub_client: TestClient,
    dispatcher: RecordingDispatcher,
    crm: tuple[str, HubSpotState],
) -> None:
    post(hub_client, [change(1, "9001", "closedwon")])
    run_enqueued(hub, list(dispatcher.sent))
    calls = len(crm[1].calls)
    dispatcher.sent.clear()
    lost = change(2, "9001", "closedlost", occurredAt=NOW_MS - 30_000)
    post(hub_client, [lost])
    run_enqueued(hub, list(dispatcher.sent))
    assert len(crm[1].calls) == calls  # the deal id is all a cancel needs
    assert [x.status for x in all_letters(hub)] == [LetterStatus.CANCELLED]


def test_without_hubspot_configured_the_url_says_so(client: TestClient, runtime: Runtime) -> None:
    response = client.post("/webhooks/hubspot", content=b"[]", headers=JSON)
    assert response.status_code == 404
    assert "THANKLY_HUBSPOT_CLIENT_SECRET" in response.json()["error"]
    assert inbox(runtime) == []


def test_the_request_budget_is_shared_through_redis(redis_url: str) -> None:
    now = [1000.0]
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    first = RateBudget("hs-test", 3, 10.0, redis_url, clock=lambda: now[0], sleep=sleep)
    second = RateBudget("hs-test", 3, 10.0, redis_url, clock=lambda: now[0], sleep=sleep)
    for budget in (first, second, first):
        budget.take()
    assert waits == []
    second.take()  # the fourth request in this window, from another process: waits
    assert waits == [10.0]
    now[0] = 1030.0  # 50 s before the next 60-second window
    slow = RateBudget("hs-slow", 1, 60.0, redis_url, clock=lambda: now[0], sleep=sleep)
    slow.take()
    with pytest.raises(CallError) as caught:
        slow.take()  # a wait longer than a task should hold: handed to the retry policy
    assert not caught.value.permanent and caught.value.retry_after == 50.0


def contact_change(event_id: int, contact: str, prop: str, value: str) -> dict[str, Any]:
    return change(event_id, contact, value, subscriptionType="contact.propertyChange",
                  propertyName=prop)  # fmt: skip


def test_configured_contact_properties_become_feedback_and_referrals(
    hub: Runtime,
    hub_client: TestClient,
    dispatcher: RecordingDispatcher,
    crm: tuple[str, HubSpotState],
) -> None:
    state = crm[1]
    state.contacts["201"]["nps_comment"] = "Lieferung kam zu spät."
    state.contacts["203"] = {"email": "piotr@example.pl", "firstname": "Piotr", "hs_language": "pl"}
    batch = [
        contact_change(11, "201", "nps_score", "3"),
        contact_change(12, "203", "referred_friend", "Jan Kowalski"),
        contact_change(13, "203", "phone", "+48 600 000 000"),  # not configured: ignored
        {
            **contact_change(14, "201", "nps_score", "9"),
            "subscriptionType": "object.propertyChange",
            "objectTypeId": "0-1",
        },  # the newer form of the same subscription
    ]
    response = post(hub_client, batch)
    assert response.status_code == 202 and response.json()["new"] == 3
    run_enqueued(hub, list(dispatcher.sent))
    reads = [c for c in state.calls if c.path.startswith("/crm/v3/objects/contacts/")]
    assert [c.path for c in reads] == [f"/crm/v3/objects/contacts/{i}" for i in (201, 203, 201)]
    assert "nps_comment" in reads[0].query["properties"][0].split(",")
    with hub.session_factory() as session:
        from worker.models import Event

        events = {e.external_id: e for e in session.scalars(select(Event))}
    feedback = [e for e in events.values() if e.type == "feedback.logged"]
    assert sorted(e.payload["data"]["feedback"]["rating"] for e in feedback) == [3, 9]
    low = next(e for e in feedback if e.payload["data"]["feedback"]["rating"] == 3)
    assert low.payload["data"]["feedback"]["text"] == "Lieferung kam zu spät."
    [referral] = [e for e in events.values() if e.type == "referral.made"]
    assert referral.payload["data"]["referral"]["referred_name"] == "Jan Kowalski"
    letters = sorted((x.letter, x.contact_email) for x in all_letters(hub))
    assert ("feedback_negative", "katrin.mueller@example.de") in letters
    assert ("referral_made", "piotr@example.pl") in letters


def test_a_rating_that_is_not_a_number_is_parked_with_the_reason(
    hub: Runtime, hub_client: TestClient, dispatcher: RecordingDispatcher
) -> None:
    post(hub_client, [contact_change(15, "201", "nps_score", "great")])
    run_enqueued(hub, list(dispatcher.sent))
    [row] = inbox(hub)
    assert row.status == InboxStatus.FAILED and "'great', not a rating" in (row.error or "")


def test_a_timestamp_that_is_not_ascii_digits_is_401_not_an_error(hub: Runtime) -> None:
    """Asked of the source directly: a test client re-encodes such header bytes on the way,
    so over HTTP the case never reaches the check."""
    source = hub.source("hubspot")
    assert source is not None
    body = json.dumps([change(1, "9001", "closedwon")]).encode()
    # "\u00b2" (superscript two) and Arabic-Indic digits pass str.isdigit(); int() refuses
    # the first and reads the second: neither is a timestamp HubSpot sends.
    for stamp in ("\u00b2", "\u0661\u0662", "-1", ""):
        headers = {"x-hubspot-signature-v3": "x", "x-hubspot-request-timestamp": stamp}
        with pytest.raises(Refused) as refused:
            source.receive(headers, body, NOW, "/webhooks/hubspot")
        assert refused.value.status == 401, stamp


def test_hubspots_retry_is_the_same_row_without_a_changed_body_warning(
    hub: Runtime, hub_client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    post(hub_client, [change(1, "9001", "closedwon")])
    post(hub_client, [change(1, "9001", "closedwon", attemptNumber=3)])
    assert "different body" not in caplog.text
    [row] = inbox(hub)
    assert "attemptNumber" not in json.loads(row.body)
