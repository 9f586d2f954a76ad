"""The events pages: what arrived, newest first, and what each rule decided."""

from __future__ import annotations

import json
import re
from typing import Any

from fastapi.testclient import TestClient

from tests.conftest import SAMPLES
from tests.helpers import ingest_doc
from tests.ui.conftest import client_for
from worker.runtime import Runtime


def sample(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((SAMPLES / name).read_text())
    return doc


def test_signed_out_goes_to_login(ui_runtime: Runtime) -> None:
    with client_for(ui_runtime) as client:
        for path in ("/ui/events", "/ui/events/1"):
            response = client.get(path, follow_redirects=False)
            assert response.status_code == 303
            assert response.headers["location"].startswith("/ui/login?next=")


def test_list_newest_first_with_outcomes(ui_runtime: Runtime, reader: TestClient) -> None:
    letters = ingest_doc(ui_runtime, sample("deal_closed.en.json"), "evt_deal")
    assert len(letters) == 1
    ingest_doc(ui_runtime, sample("feedback_logged.en.json"), "evt_feedback")
    ingest_doc(ui_runtime, sample("deal_lost.json"), "evt_lost")

    html = reader.get("/ui/events").text
    assert "3 events" in html
    ids = [int(x) for x in re.findall(r'href="/ui/events/(\d+)"', html)]
    assert ids == sorted(ids, reverse=True) and len(ids) == 3
    assert "emily.carter@example.com" in html
    assert "1 letter" in html
    assert "deal.lost" in html


def test_filters_by_type_contact_and_source(ui_runtime: Runtime, reader: TestClient) -> None:
    ingest_doc(ui_runtime, sample("deal_closed.en.json"), "evt_deal")
    ingest_doc(ui_runtime, sample("feedback_logged.en.json"), "evt_feedback")

    html = reader.get("/ui/events", params={"type": "feedback.logged"}).text
    assert "1 event" in html and "oliver.bennett@example.co.uk" in html
    assert "emily.carter@example.com" not in html

    html = reader.get("/ui/events", params={"contact": "Emily.Carter@example.com"}).text
    assert "1 event" in html and "emily.carter@example.com" in html

    assert "2 events" in reader.get("/ui/events", params={"source": "generic"}).text
    assert "0 events" in reader.get("/ui/events", params={"source": "hubspot"}).text

    bad = reader.get("/ui/events", params={"type": "deal.<b>"})
    assert bad.status_code == 422
    assert "&lt;b&gt;" in bad.text and "<b>" not in bad.text


def test_pagination_with_totals(ui_runtime: Runtime, reader: TestClient) -> None:
    from worker.ui import events

    for n in range(events.PAGE_SIZE + 2):
        doc = sample("deal_lost.json")
        ingest_doc(ui_runtime, doc, f"evt_{n}")
    first = reader.get("/ui/events").text
    assert f"{events.PAGE_SIZE + 2} events, page 1 of 2" in first
    assert 'rel="next"' in first and 'rel="prev"' not in first
    second = reader.get("/ui/events", params={"page": 2}).text
    assert len(re.findall(r'href="/ui/events/\d+"', second)) == 2
    assert 'rel="prev"' in second
    assert "past the last" in reader.get("/ui/events", params={"page": 5}).text


def test_event_page_shows_decisions_and_links_letters(
    ui_runtime: Runtime, reader: TestClient
) -> None:
    letters = ingest_doc(ui_runtime, sample("deal_closed.en.json"), "evt_deal")
    with ui_runtime.session_factory() as session:
        from sqlalchemy import select

        from worker.models import Event

        event_id = session.scalars(select(Event.id)).one()
    response = reader.get(f"/ui/events/{event_id}")
    assert response.status_code == 200
    html = response.text
    assert "deal.closed" in html and "evt_deal" in html
    assert "deal-closed-thanks" in html and "scheduled" in html
    assert f'href="/ui/letters/{letters[0].id}"' in html
    assert "Emily Carter" in html and "Team plan, 25 seats" in html

    # A cancelling event links the letter it cancelled (planned by another event).
    lost = sample("deal_lost.json")
    lost["data"]["deal"]["id"] = "d-98766"
    ingest_doc(ui_runtime, lost, "evt_lost")
    html = reader.get(f"/ui/events/{event_id + 1}").text
    assert f'href="/ui/letters/{letters[0].id}"' in html
    assert "cancelled" in html
    assert reader.get("/ui/events/999999").status_code == 404


def test_stored_text_is_escaped(ui_runtime: Runtime, reader: TestClient) -> None:
    doc = sample("feedback_logged.en.json")
    doc["data"]["feedback"]["text"] = "<script>alert(1)</script> clumsy"
    doc["data"]["contact"]["first_name"] = "<script>x</script>"
    ingest_doc(ui_runtime, doc, "evt_<script>")
    html = reader.get("/ui/events").text
    assert "<script>" not in html
    event_id = re.findall(r'href="/ui/events/(\d+)"', html)[0]
    page = reader.get(f"/ui/events/{event_id}").text
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; clumsy" in page
    assert "evt_&lt;script&gt;" in page
