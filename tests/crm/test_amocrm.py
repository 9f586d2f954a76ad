"""amoCRM (Kommo), as its webhooks post and API v4 answers: form-encoded lead-status
changes authenticated by a secret in the URL and the account, statuses 142/143, enrichment
of the main contact, notes that change no lead, reconciliation, and a Russian letter at a
real SMTP server."""

from __future__ import annotations

import email
import email.policy
from collections.abc import Iterator
from datetime import timedelta
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
from tests.crm.amocrm_api import RATE_LIMITED, TOKEN, UNAVAILABLE, AmoCrmState, amocrm_api
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

SECRET = "Hk3vQ9pZr2W7tXy5Lm8Nb4Cd"
ACCOUNT, SUBDOMAIN = "29085955", "romashka"
FORM = {"content-type": "application/x-www-form-urlencoded"}
AT = int((NOW - timedelta(minutes=1)).timestamp())


@pytest.fixture
def api() -> Iterator[tuple[str, AmoCrmState]]:
    with amocrm_api() as (url, state):
        state.leads["25399013"] = {
            "id": 25399013, "name": "Поставка мебели", "price": 84000, "status_id": 142,
            "pipeline_id": 3104455, "responsible_user_id": 504141, "account_id": 29085955,
            "updated_at": AT, "closed_at": AT,
            "contacts": [{"id": 11, "is_main": False}, {"id": 12, "is_main": True}],
        }  # fmt: skip
        values = [{"value": "olga@private.example", "enum_code": "PRIV"},
                  {"value": "o.smirnova@example.ru", "enum_code": "WORK"}]  # fmt: skip
        email_field = {"field_id": 70, "field_name": "Email", "field_code": "EMAIL",
                       "field_type": "multitext", "values": values}  # fmt: skip
        state.contacts["12"] = {"id": 12, "name": "Ольга Смирнова", "first_name": "Ольга",
                                "last_name": "Смирнова",
                                "custom_fields_values": [email_field]}  # fmt: skip
        state.users["504141"] = {"id": 504141, "name": "Дмитрий Козлов",
                                 "email": "d.kozlov@seller.example"}  # fmt: skip
        yield url, state


def settings(url: str, **extra: Any) -> dict[str, Any]:
    return {
        "amocrm_subdomain": SUBDOMAIN,
        "amocrm_account_id": ACCOUNT,
        "amocrm_webhook_secret": SecretStr(SECRET),
        "amocrm_token": SecretStr(TOKEN),
        "amocrm_api_base": url,
        "crm_reconcile_minutes": 0,
        **extra,
    }


@pytest.fixture
def amo(
    tmp_path: Path,
    db_url: str,
    clock: FixedClock,
    dispatcher: RecordingDispatcher,
    api: tuple[str, AmoCrmState],
) -> Iterator[Runtime]:
    with crm_runtime(tmp_path, db_url, clock, dispatcher, **settings(api[0])) as runtime:
        yield runtime


@pytest.fixture
def amo_client(amo: Runtime) -> Iterator[TestClient]:
    with app_client(amo) as test_client:
        yield test_client


def status_change(*leads: tuple[int, int, int | None], **account: str) -> bytes:
    """amoCRM's status webhook: every lead under leads[status][i], then the account."""
    fields: list[tuple[str, str]] = []
    for i, (lead, status, old) in enumerate(leads):
        fields += [
            (f"leads[status][{i}][id]", str(lead)),
            (f"leads[status][{i}][name]", "Поставка мебели"),
            (f"leads[status][{i}][status_id]", str(status)),
            (f"leads[status][{i}][pipeline_id]", "3104455"),
            (f"leads[status][{i}][old_status_id]", "" if old is None else str(old)),
            (f"leads[status][{i}][old_pipeline_id]", "3104455"),
            (f"leads[status][{i}][price]", "84000"),
            (f"leads[status][{i}][responsible_user_id]", "504141"),
            (f"leads[status][{i}][last_modified]", str(AT + i)),
            (f"leads[status][{i}][account_id]", ACCOUNT),
        ]  # fmt: skip
    fields += [
        ("account[subdomain]", account.get("subdomain", SUBDOMAIN)),
        ("account[id]", account.get("id", ACCOUNT)),
        ("account[_links][self]", f"https://{SUBDOMAIN}.amocrm.ru"),
    ]
    return urlencode(fields).encode()


def post(
    client: TestClient, body: bytes, secret: str | None = SECRET, headers: dict[str, str] = FORM
) -> httpx.Response:
    url = "/webhooks/amocrm" + (f"?secret={secret}" if secret is not None else "")
    response: httpx.Response = client.post(url, content=body, headers=headers)
    return response


def test_a_lead_moved_to_142_is_stored_then_read_and_planned_in_russian(
    amo: Runtime,
    amo_client: TestClient,
    dispatcher: RecordingDispatcher,
    api: tuple[str, AmoCrmState],
) -> None:
    state = api[1]
    body = status_change((25399013, 142, 3104458))
    assert "%D0%9F%D0%BE%D1%81%D1%82%D0%B0%D0%B2%D0%BA%D0%B0" in body.decode()  # Cyrillic, encoded
    response = post(amo_client, body)
    assert response.status_code == 202, response.text
    assert state.calls == []
    [row] = inbox(amo)
    assert row.event_id == f"amo:{ACCOUNT}:25399013:142:{AT}"
    assert SECRET not in row.body

    run_enqueued(amo, list(dispatcher.sent))
    assert [(c.method, c.path, c.query) for c in state.calls] == [
        ("GET", "/api/v4/leads/25399013", {"with": ["contacts"]}),
        ("GET", "/api/v4/contacts/12", {}),  # the main contact, listed second
        ("GET", "/api/v4/users/504141", {}),
    ]
    assert {c.authorization for c in state.calls} == {f"Bearer {TOKEN}"}
    [letter] = all_letters(amo)
    assert (letter.contact_email, letter.locale, letter.deal_id) == (
        "o.smirnova@example.ru", "ru", "25399013",
    )  # fmt: skip
    with amo.session_factory() as session:
        data = session.scalars(select(Event.payload)).one()["data"]
    assert (data["deal"]["amount"], data["deal"]["currency"]) == ("84000", "RUB")
    assert data["owner"] == {"name": "Дмитрий Козлов", "email": "d.kozlov@seller.example"}
    assert data["contact"]["timezone"] == "Europe/Moscow"


@pytest.mark.parametrize(
    ("body", "secret", "status"),
    [
        (status_change((1, 142, 5)), None, 401),
        (status_change((1, 142, 5)), "wrong-" + SECRET, 401),
        (status_change((1, 142, 5)), SECRET[:-1], 401),
        (status_change((1, 142, 5), subdomain="other"), SECRET, 401),
        (status_change((1, 142, 5), id="1"), SECRET, 401),
        (status_change((1, 142, 5)).replace(b"=25399013", b"=x"), SECRET, 202),
        (status_change((1, 142, 5)).replace(b"status_id%5D=142", b"status_id%5D=won"), SECRET, 422),
    ],
    ids=[
        "no secret",
        "wrong secret",
        "short secret",
        "other subdomain",
        "other account",
        "control",
        "bad status",
    ],
)
def test_a_request_that_is_not_the_accounts_stores_nothing(
    amo: Runtime, amo_client: TestClient, body: bytes, secret: str | None, status: int
) -> None:
    assert post(amo_client, body, secret).status_code == status
    assert len(inbox(amo)) == (1 if status == 202 else 0)


def test_several_leads_in_one_post_and_the_same_post_twice(
    amo: Runtime,
    amo_client: TestClient,
    dispatcher: RecordingDispatcher,
    api: tuple[str, AmoCrmState],
) -> None:
    api[1].leads["25399014"] = {**api[1].leads["25399013"], "id": 25399014}
    body = status_change((25399013, 142, 3104458), (25399014, 3104460, 3104458), (25399015, 143, 1))
    response = post(amo_client, body)
    assert response.status_code == 202 and response.json()["new"] == 2  # 142 and 143 only
    assert post(amo_client, body).json()["status"] == "duplicate"
    run_enqueued(amo, list(dispatcher.sent))
    assert len(all_letters(amo)) == 1
    assert post(amo_client, status_change((25399014, 3104460, 3104458))).json() == {
        "status": "ignored"
    }


def test_leaving_142_reopens_and_cancels(
    amo: Runtime, amo_client: TestClient, dispatcher: RecordingDispatcher
) -> None:
    post(amo_client, status_change((25399013, 142, 3104458)))
    run_enqueued(amo, list(dispatcher.sent))
    dispatcher.sent.clear()
    body = status_change((25399013, 3104458, 142)).replace(
        f"={AT}&".encode(), f"={AT + 30}&".encode()
    )
    post(amo_client, body)
    run_enqueued(amo, list(dispatcher.sent))
    assert [x.status for x in all_letters(amo)] == [LetterStatus.CANCELLED]


def test_a_429_storm_ends_with_the_letter_planned_and_nothing_parked(
    amo: Runtime, amo_client: TestClient, clock: FixedClock, api: tuple[str, AmoCrmState]
) -> None:
    api[1].failures = [RATE_LIMITED] * 4 + [UNAVAILABLE] * 2
    post(amo_client, status_change((25399013, 142, 3104458)))
    [row] = inbox(amo)
    outcomes = ingest_through_failures(amo, clock, row.id)
    assert outcomes[-1] == "ingested" and "retry" in outcomes
    assert [x.status for x in all_letters(amo)] == [LetterStatus.SCHEDULED]


def test_notes_on_the_lead_in_russian_and_a_retry_finds_its_first_try(
    amo: Runtime,
    amo_client: TestClient,
    dispatcher: RecordingDispatcher,
    clock: FixedClock,
    api: tuple[str, AmoCrmState],
) -> None:
    state = api[1]
    post(amo_client, status_change((25399013, 142, 3104458)))
    run_enqueued(amo, list(dispatcher.sent))
    [letter] = all_letters(amo)
    state.lost_answers = 1  # the note is written, its answer lost (sending posts nothing)
    send_then_report(amo, clock, letter.due_at)
    [note] = state.notes
    assert note["entity_id"] == 25399013
    assert note["params"]["text"].startswith("Thankly отправил письмо «")
    assert note["params"]["text"].endswith(f"thankly:sent:{letter.id}")
    posts = [(c.method, c.path) for c in state.calls if c.method != "GET"]
    assert posts == [("POST", "/api/v4/leads/notes")]  # nothing else was changed
    assert ("GET", "/api/v4/leads/25399013/notes") in [(c.method, c.path) for c in state.calls]


def test_reconciliation_finds_a_won_lead_whose_webhook_never_came(
    amo: Runtime,
    amo_client: TestClient,
    dispatcher: RecordingDispatcher,
    api: tuple[str, AmoCrmState],
) -> None:
    state = api[1]
    post(amo_client, status_change((25399013, 142, 3104458)))
    run_enqueued(amo, list(dispatcher.sent))
    earlier = int((NOW - timedelta(hours=1)).timestamp())
    # Its webhook came (settled: reconciliation looks at wins older than 10 minutes).
    state.leads["25399013"].update(updated_at=earlier - 60, closed_at=earlier - 60)
    for lead_id, status in ((25399020, 142), (25399021, 142), (25399022, 3104458)):
        state.leads[str(lead_id)] = {**state.leads["25399013"], "id": lead_id, "status_id": status,
                                     "updated_at": earlier, "closed_at": earlier}  # fmt: skip
    state.calls.clear()
    report = run(amo, "amocrm", NOW - timedelta(days=1))
    assert (report.found, report.already, report.added) == (3, 1, 2)
    pages = [c.query.get("page") for c in state.calls if c.path == "/api/v4/leads"]
    assert pages == [["1"], ["2"]]
    dispatcher.sent.clear()
    tick.tick(amo)
    run_enqueued(amo, [(t, a) for t, a in dispatcher.sent if t == INGEST_INBOX])
    assert sorted(x.deal_id or "" for x in all_letters(amo)) == ["25399013", "25399020", "25399021"]


def test_a_won_lead_ends_as_a_russian_letter_at_the_smtp_server_and_a_note(
    smtp_runtimes: Any, clock: FixedClock, api: tuple[str, AmoCrmState]
) -> None:
    with smtp_server() as (script, port):
        runtime = smtp_runtimes(port, **settings(api[0]))
        dispatcher = runtime.dispatcher
        assert isinstance(dispatcher, RecordingDispatcher)
        with TestClient(create_app(runtime)) as client:
            assert post(client, status_change((25399013, 142, 3104458))).status_code == 202
        run_enqueued(runtime, list(dispatcher.sent))
        [letter] = all_letters(runtime)
        send_then_report(runtime, clock, letter.due_at)
    [raw] = script.raw
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    body = message.get_body(("plain",))
    assert body is not None and "Ольга" in body.get_content()
    assert "спасибо" in (str(message["Subject"]) + body.get_content()).lower()
    [note] = api[1].notes
    assert note["entity_id"] == 25399013


def test_crm_check_amocrm_names_the_account_and_catches_a_wrong_id(
    cli: Any, monkeypatch: pytest.MonkeyPatch, api: tuple[str, AmoCrmState]
) -> None:
    env = {"THANKLY_AMOCRM_SUBDOMAIN": SUBDOMAIN, "THANKLY_AMOCRM_WEBHOOK_SECRET": SECRET,
           "THANKLY_AMOCRM_TOKEN": TOKEN, "THANKLY_AMOCRM_API_BASE": api[0],
           "THANKLY_AMOCRM_ACCOUNT_ID": ACCOUNT}  # fmt: skip
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    result = cli("crm", "check", "amocrm")
    assert result.exit_code == 0, result.output
    assert "token accepted: account ООО Ромашка (id 29085955)" in result.output
    assert SECRET not in result.output and TOKEN not in result.output
    monkeypatch.setenv("THANKLY_AMOCRM_ACCOUNT_ID", "1")
    wrong = cli("crm", "check", "amocrm")
    assert wrong.exit_code == 1 and "the token's account is 29085955" in wrong.output
