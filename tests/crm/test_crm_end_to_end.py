"""The issue's finish line, through the real stack in one process: a HubSpot batch and a
Pipedrive won-deal payload, posted as those CRMs post them, each end as a letter at a real
SMTP server and as an engagement / activity in the imitation CRM, with both CRMs connected
at once and each activity going back to the CRM its deal came from."""

from __future__ import annotations

import email
import email.policy
from collections.abc import Iterator
from datetime import timedelta
from email.message import EmailMessage
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from tests.conftest import NOW
from tests.crm.hubspot_api import TOKEN as HS_TOKEN
from tests.crm.hubspot_api import HubSpotState, hubspot_api
from tests.crm.pipedrive_api import TOKEN as PD_TOKEN
from tests.crm.pipedrive_api import PipedriveState, pipedrive_api
from tests.crm.test_hubspot_intake import PUBLIC, SECRET, change
from tests.crm.test_hubspot_intake import post as post_hubspot
from tests.crm.test_pipedrive_intake import PASSWORD, USER, basic, webhook
from tests.helpers import all_letters
from tests.smtp_server import Script, smtp_server
from worker.clock import FixedClock
from worker.http.app import create_app
from worker.jobs import run_enqueued
from worker.models import LetterStatus
from worker.queue import RecordingDispatcher
from worker.runtime import Runtime, set_runtime
from worker.scheduling import tick


@pytest.fixture
def stack(
    smtp_runtimes: Any,
) -> Iterator[tuple[Runtime, Script, HubSpotState, PipedriveState]]:
    with (
        hubspot_api() as (hs_url, hs),
        pipedrive_api() as (pd_url, pd),
        smtp_server() as (
            script,
            port,
        ),
    ):
        hs.contacts["201"] = {"email": "katrin.mueller@example.de", "firstname": "Katrin",
                              "lastname": "Müller", "hs_language": "de",
                              "hs_timezone": "europe_slash_berlin"}  # fmt: skip
        hs.owners["77"] = {"id": "77", "email": "jonas@seller.example", "firstName": "Jonas",
                           "lastName": "Becker"}  # fmt: skip
        hs.add_deal("9001", ["201"], dealname="Jahreslizenz", amount="3600",
                    deal_currency_code="EUR", hubspot_owner_id="77")  # fmt: skip
        pd.deals["77"] = {"id": 77, "title": "Wdrożenie CRM", "value": 12500, "currency": "PLN",
                          "status": "won", "owner_id": 9, "person_id": 5}  # fmt: skip
        address = {"value": "zofia@nowak.example", "primary": True}
        pd.persons["5"] = {"id": 5, "name": "Zofia Nowak", "first_name": "Zofia",
                           "last_name": "Nowak", "emails": [address]}  # fmt: skip
        pd.users["9"] = {"id": 9, "name": "Piotr Zieliński", "email": "piotr@seller.example"}
        runtime = smtp_runtimes(
            port,
            public_url=PUBLIC,
            hubspot_client_secret=SecretStr(SECRET),
            hubspot_token=SecretStr(HS_TOKEN),
            hubspot_api_base=hs_url,
            pipedrive_webhook_user=USER,
            pipedrive_webhook_password=SecretStr(PASSWORD),
            pipedrive_token=SecretStr(PD_TOKEN),
            pipedrive_api_base=pd_url,
            pipedrive_locale="pl",
            pipedrive_timezone="Europe/Warsaw",
            crm_reconcile_minutes=0,
        )
        set_runtime(runtime)
        yield runtime, script, hs, pd
        set_runtime(None)


def drain(runtime: Runtime) -> None:
    """Do what the workers would: run everything enqueued until nothing is left."""
    dispatcher = runtime.dispatcher
    assert isinstance(dispatcher, RecordingDispatcher)
    while dispatcher.sent:
        batch = list(dispatcher.sent)
        dispatcher.sent.clear()
        run_enqueued(runtime, batch)


def test_a_hubspot_batch_and_a_pipedrive_win_end_as_letters_and_crm_entries(
    stack: tuple[Runtime, Script, HubSpotState, PipedriveState], clock: FixedClock
) -> None:
    runtime, script, hs, pd = stack
    with TestClient(create_app(runtime), raise_server_exceptions=False) as client:
        assert post_hubspot(client, [change(1, "9001", "closedwon")]).status_code == 202
        response = client.post(
            "/webhooks/pipedrive",
            json=webhook("2f0c", 77, "won", "open"),
            headers=basic(),
        )
        assert response.status_code == 202
    drain(runtime)  # ingest: both deals read through their CRM's API
    letters = {x.deal_id: x for x in all_letters(runtime)}
    assert {d: (x.locale, x.status) for d, x in letters.items()} == {
        "9001": ("de", LetterStatus.SCHEDULED),
        "77": ("pl", LetterStatus.SCHEDULED),
    }

    # The letters wait for their delay (at least a day) and the customer's business hours.
    assert all(x.due_at - NOW >= timedelta(hours=24) for x in letters.values())
    clock.set(max(x.due_at for x in letters.values()))
    tick.tick(runtime)
    drain(runtime)
    assert len(script.delivered) == 2
    recipients = sorted(rcpt for _, rcpts, _ in script.envelopes for rcpt in rcpts)
    assert recipients == ["katrin.mueller@example.de", "zofia@nowak.example"]
    texts = []
    for raw in script.raw:
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        part = message.get_body(("plain",))
        assert part is not None
        texts.append(part.get_content())
    # Each letter greets its customer by the name the CRM holds (Polish: a vocative form).
    assert sum("Katrin" in t for t in texts) == 1 and sum("Zofi" in t for t in texts) == 1
    sent = {x.deal_id: x for x in all_letters(runtime)}
    assert {x.status for x in sent.values()} == {LetterStatus.SENT}

    # The scheduler's next ticks deliver the email.sent activities, each to its own CRM.
    clock.set(clock.now() + timedelta(minutes=1))
    tick.tick(runtime)
    drain(runtime)
    [engagement] = hs.engagements
    assert engagement["type"] == "emails"
    assert engagement["links"] == {"contact": "201", "deal": "9001"}
    props = engagement["properties"]
    assert props["hs_email_subject"] == sent["9001"].rendered["subject"]  # type: ignore[index]
    assert "Katrin" in props["hs_email_text"] and props["hs_email_status"] == "SENT"
    [activity] = pd.activities
    assert (activity["type"], activity["done"], activity["deal_id"]) == ("email", True, 77)
    assert activity["participants"] == [{"person_id": 5, "primary": True}]
    assert activity["subject"] == sent["77"].rendered["subject"]  # type: ignore[index]
    assert [e["type"] for e in hs.engagements] == ["emails"] and pd.notes == []
