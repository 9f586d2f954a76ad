"""No authenticated request makes a native CRM's intake fail with anything but a clear
4xx: arbitrary JSON (HubSpot, Pipedrive) and arbitrary form fields (Bitrix24, amoCRM),
each properly authenticated, either become events or are refused with a reason."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from tests.conftest import make_settings
from worker.crm.amocrm.source import AmoCrmSource
from worker.crm.bitrix24.source import Bitrix24Source
from worker.crm.hubspot.source import HubSpotSource, signature, signed_uri
from worker.crm.pipedrive.source import PipedriveSource
from worker.intake.sources import RawEvent, Refused

NOW = datetime(2026, 11, 20, 10, 5, tzinfo=UTC)
SETTINGS = make_settings(
    Path("/nonexistent"),
    "sqlite://",
    public_url="https://thankly.example",
    hubspot_client_secret=SecretStr("hs-secret"),
    hubspot_token=SecretStr("t"),
    hubspot_feedback_property="nps",
    pipedrive_webhook_user="u",
    pipedrive_webhook_password=SecretStr("p"),
    pipedrive_feedback_field="rating",
    pipedrive_feedback_activity_type="nps_call",
    pipedrive_feedback_note_tag="#feedback",
    bitrix24_portal="acme.bitrix24.ru",
    bitrix24_app_token=SecretStr("b24-token"),
    amocrm_subdomain="romashka",
    amocrm_webhook_secret=SecretStr("s" * 24),
)
text = st.text(st.characters(codec="utf-8"), max_size=12)
leaves = (
    st.none()
    | st.booleans()
    | st.integers(-(10**20), 10**20)
    | st.floats(allow_nan=False, allow_infinity=False)
    | text
)
values = st.recursive(
    leaves,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=4),
    max_leaves=12,
)
known = st.sampled_from(["deal", "activity", "note", "change", "create", "won", "lost", "open",
                         "2.0", "dealstage", "closedwon", "142", "143", "0-3", "0-1"])  # fmt: skip
hubspot_events = st.fixed_dictionaries(
    {},
    optional={k: values | known for k in ("eventId", "subscriptionId", "portalId", "occurredAt",
              "subscriptionType", "objectId", "propertyName", "propertyValue", "objectTypeId")},
)  # fmt: skip
entities = st.sampled_from(["deal", "activity", "note", "person"]) | values
actions = st.sampled_from(["change", "create", "delete"]) | values
records = (
    st.none()
    | st.lists(values, max_size=2)
    | st.dictionaries(known | text, values | known, max_size=6)
    | values
)
pipedrive_bodies = st.fixed_dictionaries(
    {
        "meta": st.fixed_dictionaries(
            {
                "version": st.sampled_from(["2.0", "2", 2]),
                "id": values | known,
                "timestamp": st.integers(0, 4 * 10**9) | st.just("2026-11-20T10:00:00Z") | values,
                "entity": entities,
                "action": actions,
            },
            optional={"company_id": values},
        ),
        "data": records,
        "previous": records,
    }
)
form_fields = st.lists(st.tuples(text | known, text | known), max_size=8)


def only_refusals_or_events(call: Any) -> None:
    try:
        events = call()
    except Refused as refused:
        assert refused.status in (400, 401, 415, 422), refused
        return
    assert all(isinstance(e, RawEvent) and len(e.event_id) < 10_000 for e in events)
    for event in events:
        json.loads(event.body)  # stored bodies are JSON


@settings(max_examples=150, deadline=None)
@given(batch=st.lists(hubspot_events, max_size=4) | values)
def test_hubspot_never_fails_on_a_signed_body(batch: Any) -> None:
    source = HubSpotSource(SETTINGS)
    body = json.dumps(batch).encode()
    stamp = str(int(NOW.timestamp() * 1000))
    uri = signed_uri(SETTINGS.public_url, "/webhooks/hubspot")
    headers = {
        "x-hubspot-signature-v3": signature("hs-secret", "POST", uri, body, stamp),
        "x-hubspot-request-timestamp": stamp,
    }
    only_refusals_or_events(lambda: source.receive(headers, body, NOW, "/webhooks/hubspot"))


@settings(max_examples=400, deadline=None)
@given(payload=pipedrive_bodies | values)
def test_pipedrive_never_fails_on_an_authenticated_body(payload: Any) -> None:
    source = PipedriveSource(SETTINGS)
    headers = {"authorization": "Basic " + base64.b64encode(b"u:p").decode()}
    body = json.dumps(payload).encode()
    only_refusals_or_events(lambda: source.receive(headers, body, NOW))


@settings(max_examples=150, deadline=None)
@given(
    extra=form_fields,
    deal=text | known,
    ts=text | st.integers(0, 10**12).map(str),
    event=st.sampled_from(["ONCRMDEALUPDATE", "ONCRMDEALADD", "ONCRMLEADADD"]) | text,
)
def test_bitrix24_never_fails_on_an_authenticated_form(
    extra: list[tuple[str, str]], deal: str, ts: str, event: str
) -> None:
    fields = [("event", event), ("data[FIELDS][ID]", deal), ("ts", ts),
              ("auth[domain]", "acme.bitrix24.ru"), ("auth[application_token]", "b24-token"),
              *extra]  # fmt: skip
    body = urlencode(fields).encode()
    only_refusals_or_events(lambda: Bitrix24Source(SETTINGS).receive({}, body, NOW))


lead_keys = st.sampled_from(["id", "status_id", "old_status_id", "last_modified", "updated_at",
                             "price", "responsible_user_id"])  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(
    leads=st.lists(
        st.tuples(st.integers(0, 3), lead_keys, text | known | st.integers(0, 10**12).map(str)),
        max_size=10,
    ),
    extra=form_fields,
)
def test_amocrm_never_fails_on_an_authenticated_form(
    leads: list[tuple[int, str, str]], extra: list[tuple[str, str]]
) -> None:
    fields = [(f"leads[status][{i}][{key}]", value) for i, key, value in leads]
    fields += [("account[subdomain]", "romashka"), *extra]
    body = urlencode(fields).encode()
    target = "/webhooks/amocrm?secret=" + "s" * 24
    only_refusals_or_events(lambda: AmoCrmSource(SETTINGS).receive({}, body, NOW, target))
