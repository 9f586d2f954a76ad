"""Bitrix24, as a portal's outbound webhook posts and its REST API answers: form-encoded
events authenticated by application token and portal, enrichment through `batch`, the
portal's limits, timeline comments that never touch the deal, reconciliation (Bitrix24
never retries an event), and a Russian letter at a real SMTP server."""

from __future__ import annotations

import email
import email.policy
from collections.abc import Iterator
from datetime import datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import select

from tests.conftest import NOW
from tests.crm.bitrix24_api import QUERY_LIMIT, TIME_LIMIT, Bitrix24State, bitrix24_api
from tests.crm.steps import (
    app_client,
    crm_runtime,
    inbox,
    ingest_through_failures,
    send_then_report,
)
from tests.helpers import all_letters
from tests.smtp_server import smtp_server
from worker.clock import FixedClock
from worker.crm.reconcile import run
from worker.http.app import create_app
from worker.jobs import run_enqueued
from worker.models import Event, LetterStatus
from worker.queue import INGEST_INBOX, RecordingDispatcher
from worker.runtime import Runtime
from worker.scheduling import tick

PORTAL = "acme.bitrix24.ru"
APP_TOKEN = "s1a2b3c4d5e6f7g8h9i0jklmnopqrstu"
FORM = {"content-type": "application/x-www-form-urlencoded"}


def stamp(at: datetime) -> str:
    return at.isoformat()


@pytest.fixture
def api() -> Iterator[tuple[str, Bitrix24State]]:
    with bitrix24_api() as (url, state):
        state.deals["77"] = {
            "ID": "77", "TITLE": "Поставка оборудования", "STAGE_ID": "WON",
            "STAGE_SEMANTIC_ID": "S", "OPPORTUNITY": "125000.00", "CURRENCY_ID": "RUB",
            "ASSIGNED_BY_ID": "1", "CONTACT_ID": "5",
            "DATE_MODIFY": stamp(NOW - timedelta(minutes=1)),
        }  # fmt: skip
        state.deal_contacts["77"] = [
            {"CONTACT_ID": 6, "SORT": 10, "ROLE_ID": 0, "IS_PRIMARY": "N"},
            {"CONTACT_ID": 5, "SORT": 20, "ROLE_ID": 0, "IS_PRIMARY": "Y"},
        ]
        home = {"ID": "11", "VALUE_TYPE": "HOME", "VALUE": "anna@home.example", "TYPE_ID": "EMAIL"}
        work = {"ID": "12", "VALUE_TYPE": "WORK", "VALUE": "anna.ivanova@example.ru",
                "TYPE_ID": "EMAIL"}  # fmt: skip
        state.contacts["5"] = {"ID": "5", "NAME": "Анна", "LAST_NAME": "Иванова",
                               "EMAIL": [home, work]}  # fmt: skip
        state.users["1"] = {"ID": "1", "NAME": "Сергей", "LAST_NAME": "Петров",
                            "EMAIL": "s.petrov@seller.example"}  # fmt: skip
        yield url, state


def settings(url: str, **extra: Any) -> dict[str, Any]:
    return {
        "bitrix24_portal": f"https://{PORTAL}/",
        "bitrix24_app_token": SecretStr(APP_TOKEN),
        "bitrix24_rest_url": SecretStr(url),
        "crm_reconcile_minutes": 0,
        **extra,
    }


@pytest.fixture
def b24(
    tmp_path: Path,
    db_url: str,
    clock: FixedClock,
    dispatcher: RecordingDispatcher,
    api: tuple[str, Bitrix24State],
) -> Iterator[Runtime]:
    with crm_runtime(tmp_path, db_url, clock, dispatcher, **settings(api[0])) as runtime:
        yield runtime


@pytest.fixture
def b24_client(b24: Runtime) -> Iterator[TestClient]:
    with app_client(b24) as test_client:
        yield test_client


def outbound(deal: str, ts: datetime, event: str = "ONCRMDEALUPDATE", **auth: str) -> bytes:
    """The body of Bitrix24's outbound webhook, keys percent-encoded as the portal sends them."""
    fields = [
        ("event", event), ("event_handler_id", "17"), ("data[FIELDS][ID]", deal),
        ("ts", str(int(ts.timestamp()))), ("auth[access_token]", ""), ("auth[expires]", "3600"),
        ("auth[expires_in]", "3600"), ("auth[scope]", "crm"),
        ("auth[domain]", auth.get("domain", PORTAL)),
        ("auth[server_endpoint]", "https://oauth.bitrix.info/rest/"), ("auth[status]", "L"),
        ("auth[client_endpoint]", f"https://{PORTAL}/rest/"),
        ("auth[member_id]", "9f3e7c1d2b4a6e8f0a1b2c3d4e5f6a7b"),
        ("auth[application_token]", auth.get("token", APP_TOKEN)),
    ]  # fmt: skip
    return urlencode(fields).encode()


def post(client: TestClient, body: bytes, headers: dict[str, str] = FORM) -> httpx.Response:
    response: httpx.Response = client.post("/webhooks/bitrix24", content=body, headers=headers)
    return response


def test_a_won_deal_is_stored_at_once_then_read_in_two_batches_and_planned_in_russian(
    b24: Runtime,
    b24_client: TestClient,
    dispatcher: RecordingDispatcher,
    api: tuple[str, Bitrix24State],
) -> None:
    state = api[1]
    body = outbound("77", NOW - timedelta(minutes=1))
    assert b"data%5BFIELDS%5D%5BID%5D=77" in body  # as the portal encodes it
    response = post(b24_client, body)
    assert response.status_code == 202, response.text
    assert state.calls == []  # answered before the portal is asked anything
    [row] = inbox(b24)
    ts = int((NOW - timedelta(minutes=1)).timestamp())
    assert row.event_id == f"b24:{PORTAL}:ONCRMDEALUPDATE:77:{ts}"
    assert APP_TOKEN not in row.body  # the credential is not kept

    run_enqueued(b24, list(dispatcher.sent))
    assert state.methods() == [
        "batch(crm.deal.get,crm.deal.contact.items.get)",
        "batch(crm.contact.get,user.get)",
    ]
    [letter] = all_letters(b24)
    # The primary contact (listed second), her work address, the portal's language.
    assert (letter.contact_email, letter.contact_id, letter.locale, letter.deal_id) == (
        "anna.ivanova@example.ru", "5", "ru", "77",
    )  # fmt: skip
    with b24.session_factory() as session:
        data = session.scalars(select(Event.payload)).one()["data"]
    assert data["contact"]["timezone"] == "Europe/Moscow"
    assert data["owner"] == {"name": "Сергей Петров", "email": "s.petrov@seller.example"}
    assert (data["deal"]["amount"], data["deal"]["currency"]) == ("125000.00", "RUB")


@pytest.mark.parametrize(
    ("body", "headers", "status"),
    [
        (outbound("77", NOW, token="wrong-token-wrong-token-wrong-to"), FORM, 401),
        (outbound("77", NOW, token=""), FORM, 401),
        (outbound("77", NOW, domain="other.bitrix24.ru"), FORM, 401),
        (b"event=ONCRMDEALUPDATE&data%5BFIELDS%5D%5BID%5D=77", FORM, 401),
        (outbound("77", NOW), {"content-type": "application/json"}, 415),
        (outbound("7 7", NOW), FORM, 422),
        (b"\xff\xfe", FORM, 400),
    ],
    ids=["wrong token", "empty token", "other portal", "no auth", "json", "bad id", "not utf-8"],
)
def test_a_request_that_is_not_the_portals_stores_nothing(
    b24: Runtime, b24_client: TestClient, body: bytes, headers: dict[str, str], status: int
) -> None:
    assert post(b24_client, body, headers).status_code == status
    assert inbox(b24) == []


def test_the_same_event_twice_and_later_edits_of_the_won_deal_make_one_letter(
    b24: Runtime, b24_client: TestClient, dispatcher: RecordingDispatcher
) -> None:
    body = outbound("77", NOW - timedelta(minutes=1))
    assert post(b24_client, body).status_code == 202
    assert post(b24_client, body).json()["status"] == "duplicate"
    # Someone edits the won deal's comment: Bitrix24 posts another update.
    assert post(b24_client, outbound("77", NOW - timedelta(seconds=30))).status_code == 202
    run_enqueued(b24, list(dispatcher.sent))
    assert len(inbox(b24)) == 2 and len(all_letters(b24)) == 1
    with b24.session_factory() as session:
        later = session.scalars(select(Event).order_by(Event.id.desc())).first()
    assert later is not None and "closed already" in (later.decisions or [{}])[0]["reason"]


@pytest.mark.parametrize(("semantic", "kind"), [("F", "deal.lost"), ("P", "deal.reopened")])
def test_a_lost_or_reopened_deal_cancels_its_letter(
    b24: Runtime,
    b24_client: TestClient,
    dispatcher: RecordingDispatcher,
    api: tuple[str, Bitrix24State],
    semantic: str,
    kind: str,
) -> None:
    post(b24_client, outbound("77", NOW - timedelta(minutes=1)))
    run_enqueued(b24, list(dispatcher.sent))
    dispatcher.sent.clear()
    api[1].deals["77"]["STAGE_SEMANTIC_ID"] = semantic
    post(b24_client, outbound("77", NOW - timedelta(seconds=20)))
    run_enqueued(b24, list(dispatcher.sent))
    assert [x.status for x in all_letters(b24)] == [LetterStatus.CANCELLED]
    with b24.session_factory() as session:
        assert session.scalars(select(Event.type).order_by(Event.id.desc())).first() == kind


def test_the_portals_limits_end_with_the_letter_planned_and_nothing_parked(
    b24: Runtime, b24_client: TestClient, clock: FixedClock, api: tuple[str, Bitrix24State]
) -> None:
    api[1].failures = [QUERY_LIMIT] * 4 + [TIME_LIMIT] + [QUERY_LIMIT]
    post(b24_client, outbound("77", NOW - timedelta(minutes=1)))
    [row] = inbox(b24)
    outcomes = ingest_through_failures(b24, clock, row.id)
    assert outcomes[-1] == "ingested" and "retry" in outcomes
    assert [x.status for x in all_letters(b24)] == [LetterStatus.SCHEDULED]


def test_comments_go_on_the_deal_and_the_contact_in_russian_and_never_update_the_deal(
    b24: Runtime,
    b24_client: TestClient,
    dispatcher: RecordingDispatcher,
    clock: FixedClock,
    api: tuple[str, Bitrix24State],
) -> None:
    state = api[1]
    post(b24_client, outbound("77", NOW - timedelta(minutes=1)))
    run_enqueued(b24, list(dispatcher.sent))
    [letter] = all_letters(b24)
    state.calls.clear()
    state.lost_answers = 1  # the first comment is written, its answer lost
    send_then_report(b24, clock, letter.due_at)  # sent as a .eml, then reported
    assert [(c["ENTITY_TYPE"], c["ENTITY_ID"]) for c in state.comments] == [
        ("deal", 77),
        ("contact", 5),
    ]
    comment = state.comments[0]["COMMENT"]
    assert comment.startswith("Thankly отправил письмо «") and "anna.ivanova@example.ru" in comment
    assert comment.endswith(f"thankly:sent:{letter.id}")
    assert all("update" not in m for m in state.methods())
    assert "crm.timeline.comment.list" in state.methods()  # the retry looked first


def test_reconciliation_finds_a_won_deal_whose_event_was_never_posted(
    b24: Runtime,
    b24_client: TestClient,
    dispatcher: RecordingDispatcher,
    api: tuple[str, Bitrix24State],
) -> None:
    state = api[1]
    post(b24_client, outbound("77", NOW - timedelta(minutes=20)))
    run_enqueued(b24, list(dispatcher.sent))
    for deal_id, minutes in (("78", 50), ("79", 40)):
        state.deals[deal_id] = {**state.deals["77"], "ID": deal_id,
                                "DATE_MODIFY": stamp(NOW - timedelta(minutes=minutes))}  # fmt: skip
        state.deal_contacts[deal_id] = [{"CONTACT_ID": 6, "IS_PRIMARY": "Y"}]
    state.contacts["6"] = {"ID": "6", "NAME": "Олег", "EMAIL": [{"VALUE": "oleg@example.ru"}]}
    state.deals["77"]["DATE_MODIFY"] = stamp(NOW - timedelta(minutes=20))
    state.calls.clear()
    report = run(b24, "bitrix24", NOW - timedelta(days=1))
    assert (report.found, report.already, report.added) == (3, 1, 2)
    lists = [c.body for c in state.calls if c.path.endswith("/crm.deal.list.json")]
    assert [b.get("start") for b in lists] == [None, 2]
    assert lists[0]["filter"]["STAGE_SEMANTIC_ID"] == "S"
    dispatcher.sent.clear()
    tick.tick(b24)
    run_enqueued(b24, [(t, a) for t, a in dispatcher.sent if t == INGEST_INBOX])
    assert sorted(x.deal_id or "" for x in all_letters(b24)) == ["77", "78", "79"]


def test_a_won_deal_ends_as_a_russian_letter_at_the_smtp_server_and_a_comment(
    smtp_runtimes: Any, clock: FixedClock, api: tuple[str, Bitrix24State]
) -> None:
    with smtp_server() as (script, port):
        runtime = smtp_runtimes(port, **settings(api[0]))
        dispatcher = runtime.dispatcher
        assert isinstance(dispatcher, RecordingDispatcher)
        with TestClient(create_app(runtime)) as client:
            assert post(client, outbound("77", NOW - timedelta(minutes=1))).status_code == 202
        run_enqueued(runtime, list(dispatcher.sent))
        [letter] = all_letters(runtime)
        send_then_report(runtime, clock, letter.due_at)
    [raw] = script.raw
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    body = message.get_body(("plain",))
    assert body is not None and "Анна" in body.get_content()
    assert "спасибо" in (str(message["Subject"]) + body.get_content()).lower()  # in Russian
    assert [c["ENTITY_TYPE"] for c in api[1].comments] == ["deal", "contact"]


def test_crm_check_bitrix24_says_what_is_set_and_whom_the_webhook_acts_as(
    cli: Any, monkeypatch: pytest.MonkeyPatch, api: tuple[str, Bitrix24State]
) -> None:
    monkeypatch.setenv("THANKLY_BITRIX24_REST_URL", api[0])
    monkeypatch.setenv("THANKLY_PUBLIC_URL", "https://thankly.example")
    result = cli("crm", "check", "bitrix24")
    assert result.exit_code == 1  # the outbound webhook's token and portal are missing
    assert "https://thankly.example/webhooks/bitrix24" in result.output
    assert "incoming webhook accepted: it acts as Сергей Петров" in result.output
    assert api[0] not in result.output  # the URL is the credential
    monkeypatch.setenv("THANKLY_BITRIX24_PORTAL", PORTAL)
    monkeypatch.setenv("THANKLY_BITRIX24_APP_TOKEN", APP_TOKEN)
    assert cli("crm", "check", "bitrix24").exit_code == 0
    monkeypatch.setenv("THANKLY_BITRIX24_REST_URL", api[0].replace("x7k2", "0000"))
    refused = cli("crm", "check", "bitrix24")
    assert refused.exit_code == 1 and "the CRM's API refused" in refused.output
