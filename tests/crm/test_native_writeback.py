"""Write-back to HubSpot and Pipedrive: what each CRM receives for every activity, that a
retry whose first answer was lost never makes a second entry, and that each activity goes
to the CRM its event came from."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from tests.conftest import make_settings
from tests.crm.hubspot_api import TOKEN as HS_TOKEN
from tests.crm.hubspot_api import HubSpotState, hubspot_api
from tests.crm.pipedrive_api import RATE_LIMITED as PD_RATE_LIMITED
from tests.crm.pipedrive_api import TOKEN as PD_TOKEN
from tests.crm.pipedrive_api import PipedriveState, pipedrive_api
from worker.crm.adapters import CrmRouter, LogCrm, make_crm
from worker.crm.hubspot.api import from_settings as hubspot_from_settings
from worker.crm.hubspot.writeback import HubSpotCrm
from worker.crm.pipedrive.api import from_settings as pipedrive_from_settings
from worker.crm.pipedrive.writeback import PipedriveCrm, marker
from worker.retry import CallError

AT = "2026-11-20T10:05:00Z"
AT_MS = str(int(datetime(2026, 11, 20, 10, 5, tzinfo=UTC).timestamp()) * 1000)


def payload(kind: str, source: str, **details: Any) -> dict[str, Any]:
    return {
        "type": kind,
        "timestamp": AT,
        "data": {
            "letter_id": 42, "letter": "deal_closed", "locale": "de",
            "subject": "Danke, Katrin <3 & mehr", "message_id": "<42.abc@shop.example>",
            "contact": {"id": "201", "email": "katrin@example.de"}, "deal": {"id": "9001"},
            "details": details, "source": source,
        },
    }  # fmt: skip


@pytest.fixture
def hubspot(tmp_path: Path) -> Iterator[tuple[HubSpotCrm, HubSpotState]]:
    with hubspot_api() as (url, state):
        settings = make_settings(
            tmp_path, "sqlite://", hubspot_token=SecretStr(HS_TOKEN), hubspot_api_base=url
        )
        yield HubSpotCrm(hubspot_from_settings(settings)), state


@pytest.fixture
def pipedrive(tmp_path: Path) -> Iterator[tuple[PipedriveCrm, PipedriveState]]:
    with pipedrive_api() as (url, state):
        settings = make_settings(
            tmp_path, "sqlite://", pipedrive_token=SecretStr(PD_TOKEN), pipedrive_api_base=url
        )
        yield PipedriveCrm(pipedrive_from_settings(settings)), state


def test_a_sent_letter_is_an_email_engagement_on_the_contact_and_the_deal(
    hubspot: tuple[HubSpotCrm, HubSpotState],
) -> None:
    crm, state = hubspot
    text = "Liebe Katrin,\n\nvielen Dank."
    crm.deliver("sent:42", payload("email.sent", "hubspot", subject="Danke", text=text))
    [call] = state.calls
    assert (call.method, call.path) == ("POST", "/crm/v3/objects/emails")
    assert call.authorization == f"Bearer {HS_TOKEN}"
    [email] = state.engagements
    props = email["properties"]
    assert props["hs_timestamp"] == AT_MS
    assert (props["hs_email_direction"], props["hs_email_status"]) == ("EMAIL", "SENT")
    assert (props["hs_email_subject"], props["hs_email_text"]) == ("Danke", text)
    assert email["links"] == {"contact": "201", "deal": "9001"}  # association types 198, 210


@pytest.mark.parametrize(
    ("kind", "details", "expected"),
    [
        ("email.opened", {"user_agent": "Mozilla"}, "opened"),
        ("email.clicked", {"url": "https://shop.example/?a=1&b=<x>"}, "a=1&amp;b=&lt;x&gt;"),
        ("contact.unsubscribed", {"via": "one-click link"}, "no more letters"),
        ("email.failed", {"error": "550 <no such user>"}, "550 &lt;no such user&gt;"),
    ],
)
def test_what_followed_is_a_note_with_everything_escaped(
    hubspot: tuple[HubSpotCrm, HubSpotState], kind: str, details: dict[str, Any], expected: str
) -> None:
    crm, state = hubspot
    crm.deliver(f"{kind}:42", payload(kind, "hubspot", **details))
    [call] = state.calls
    assert call.path == "/crm/v3/objects/notes"
    [note] = state.engagements
    body = note["properties"]["hs_note_body"]
    assert expected in body
    assert "Danke, Katrin &lt;3 &amp; mehr" in body and "<3" not in body
    assert note["properties"]["hs_timestamp"] == AT_MS
    assert note["links"] == {"contact": "201", "deal": "9001"}  # association types 202, 214


def test_a_hubspot_retry_after_a_lost_answer_makes_no_second_engagement(
    hubspot: tuple[HubSpotCrm, HubSpotState],
) -> None:
    crm, state = hubspot
    state.lost_answers = 1
    with pytest.raises(CallError) as lost:
        crm.deliver("sent:42", payload("email.sent", "hubspot", subject="Danke", text="x"))
    assert not lost.value.permanent
    assert len(state.engagements) == 1  # created, but the client could not know
    crm.deliver("sent:42", payload("email.sent", "hubspot", subject="Danke", text="x"), retry=True)
    assert len(state.engagements) == 1
    assert [c.path for c in state.calls][-1] == "/crm/v3/objects/emails/search"
    # A retry that finds nothing creates it.
    crm.deliver("opened:42", payload("email.opened", "hubspot"), retry=True)
    assert [e["type"] for e in state.engagements] == ["emails", "notes"]


def test_hubspot_refusals_say_whether_to_try_again(
    hubspot: tuple[HubSpotCrm, HubSpotState],
) -> None:
    crm, state = hubspot
    state.failures = [(429, {"Retry-After": "7"}, {"policyName": "DAILY", "status": "error"})]
    with pytest.raises(CallError) as daily:
        crm.deliver("sent:42", payload("email.sent", "hubspot"))
    assert not daily.value.permanent and daily.value.retry_after == 3600.0
    state.failures = [(400, {}, {"status": "error", "message": "Property values were not valid"})]
    with pytest.raises(CallError) as bad:
        crm.deliver("sent:42", payload("email.sent", "hubspot"))
    assert bad.value.permanent and "not valid" in str(bad.value)
    no_contact = payload("email.sent", "hubspot")
    no_contact["data"]["contact"]["id"] = None
    with pytest.raises(CallError) as unknown:
        crm.deliver("sent:42", no_contact)
    assert unknown.value.permanent


def test_a_sent_letter_is_a_done_email_activity_in_pipedrive(
    pipedrive: tuple[PipedriveCrm, PipedriveState],
) -> None:
    crm, state = pipedrive
    pl = payload("email.sent", "pipedrive", subject="Dziękujemy", text="Pani Zofio,\n<b>dzięki</b>")
    pl["data"]["contact"]["id"], pl["data"]["deal"]["id"] = "5", "77"
    crm.deliver("sent:42", pl)
    [call] = state.calls
    assert (call.method, call.path, call.headers["x-api-token"]) == (
        "POST", "/api/v2/activities", PD_TOKEN,
    )  # fmt: skip
    [activity] = state.activities
    assert activity["type"] == "email" and activity["done"] is True
    assert (activity["deal_id"], activity["participants"]) == (
        77,
        [{"person_id": 5, "primary": True}],
    )
    assert (activity["subject"], activity["due_date"], activity["due_time"]) == (
        "Dziękujemy", "2026-11-20", "10:05",
    )  # fmt: skip
    assert "&lt;b&gt;dzięki&lt;/b&gt;" in activity["note"] and marker("sent:42") in activity["note"]


def test_pipedrive_notes_and_a_retry_that_finds_its_first_try(
    pipedrive: tuple[PipedriveCrm, PipedriveState],
) -> None:
    crm, state = pipedrive
    clicked = payload("email.clicked", "pipedrive", url="https://shop.example/next")
    clicked["data"]["contact"]["id"], clicked["data"]["deal"]["id"] = "5", "77"
    state.lost_answers = 1
    with pytest.raises(CallError):
        crm.deliver("clicked:42:ab", clicked)
    crm.deliver("clicked:42:ab", clicked, retry=True)
    [note] = state.notes
    assert (note["deal_id"], note["person_id"]) == (77, 5)
    assert "clicked a link" in note["content"] and marker("clicked:42:ab") in note["content"]
    assert [c.path for c in state.calls] == ["/api/v1/notes", "/api/v1/notes"]
    assert state.calls[1].method == "GET" and state.calls[1].query["deal_id"] == ["77"]
    state.failures = [PD_RATE_LIMITED]
    with pytest.raises(CallError) as limited:
        crm.deliver("opened:42", clicked | {"type": "email.opened"})
    assert not limited.value.permanent and limited.value.retry_after == 2.0


def test_each_activity_goes_to_the_crm_its_event_came_from(
    tmp_path: Path,
    hubspot: tuple[HubSpotCrm, HubSpotState],
    pipedrive: tuple[PipedriveCrm, PipedriveState],
) -> None:
    settings = make_settings(
        tmp_path,
        "sqlite://",
        hubspot_token=SecretStr(HS_TOKEN),
        pipedrive_token=SecretStr(PD_TOKEN),
    )
    router = make_crm(settings)
    assert isinstance(router, CrmRouter) and isinstance(router.default, LogCrm)
    assert set(router.native) == {"hubspot", "pipedrive"}
    # The adapters above point at the imitations; the router's own at the real hosts.
    router.native = {"hubspot": hubspot[0], "pipedrive": pipedrive[0]}
    router.deliver("opened:1", payload("email.opened", "hubspot"))
    pd = payload("email.opened", "pipedrive")
    pd["data"]["deal"]["id"] = "77"
    router.deliver("opened:2", pd)
    router.deliver("opened:3", payload("email.opened", "generic"))  # THANKLY_CRM=log
    router.deliver("opened:4", {k: v for k, v in payload("email.opened", "x").items()})
    assert len(hubspot[1].engagements) == 1 and len(pipedrive[1].notes) == 1
    # Without a native token, every activity goes to THANKLY_CRM's adapter, as before.
    assert isinstance(make_crm(make_settings(tmp_path, "sqlite://")), LogCrm)
