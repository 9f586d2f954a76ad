"""The generic event schema: what is required, what is optional, and clear messages."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, get_args

import pytest

from tests.conftest import SAMPLES, TEMPLATES
from tests.helpers import event_doc
from worker.events import CANCEL_EVENT_TYPES, EventType, InvalidEvent, validate_event
from worker.letters.catalogue import Catalogue

SAMPLE_FILES = sorted(SAMPLES.glob("*.json"))


def test_samples_cover_every_event_type_and_every_letter_locale() -> None:
    events = [validate_event(json.loads(path.read_text())) for path in SAMPLE_FILES]
    assert {event.type for event in events} == set(get_args(EventType))
    shipped = Catalogue.scan(TEMPLATES).letters
    for letter in ("deal_closed", "feedback_logged", "referral_made"):
        event_type = letter.replace("_", ".")
        locales = {
            (event.data.contact.locale or "").split("-")[0]
            for event in events
            if event.type == event_type and event.data.contact
        }
        assert locales >= set(shipped[letter]), (
            f"{letter}: no example in {set(shipped[letter]) - locales}"
        )
    assert (SAMPLES / "deal_closed.minimal.en.json").exists()


@pytest.mark.parametrize("path", SAMPLE_FILES, ids=lambda p: p.name)
def test_every_sample_is_a_valid_event(path: Path) -> None:
    event = validate_event(json.loads(path.read_text()))
    if event.type in CANCEL_EVENT_TYPES:
        assert event.deal_id or event.contact_email
    else:
        assert event.contact_email and "@" in event.contact_email


def test_fields_are_normalised() -> None:
    doc = json.loads((SAMPLES / "deal_closed.ru.json").read_text())
    doc["data"]["contact"]["email"] = "Anna.Ivanova@EXAMPLE.org"
    doc["data"]["deal"]["amount"] = 5000
    event = validate_event(doc)
    assert event.contact_email == "anna.ivanova@example.org"  # one form for every lookup
    assert str(event.data.deal.amount) == "5000"  # type: ignore[union-attr]
    assert event.timestamp.utcoffset() is not None


def problems(doc: Any) -> dict[str, str]:
    with pytest.raises(InvalidEvent) as info:
        validate_event(doc)
    return {p["field"]: p["message"] for p in info.value.problems}


@pytest.mark.parametrize(
    "event_type", ["deal.closed", "feedback.logged", "referral.made", "contact.unsubscribed"]
)
def test_letter_events_need_a_contact_email(event_type: str) -> None:
    doc = event_doc(event_type)
    del doc["data"]["contact"]["email"]
    assert "data.contact.email is required" in " ".join(problems(doc).values())


@pytest.mark.parametrize("event_type", ["deal.reopened", "deal.lost"])
def test_cancel_events_need_a_deal_or_a_contact(event_type: str) -> None:
    assert "needs data.deal.id or data.contact.email" in " ".join(
        problems({"type": event_type, "timestamp": "2026-11-20T10:00:00Z", "data": {}}).values()
    )
    ok = {"type": event_type, "timestamp": "2026-11-20T10:00:00Z", "data": {"deal": {"id": "d"}}}
    assert validate_event(ok).deal_id == "d"


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        (("type",), "deal.won", "type"),
        (("timestamp",), "2026-11-20T10:00:00", "timestamp"),  # no zone: ambiguous
        (("timestamp",), "yesterday", "timestamp"),
        (("data", "contact", "email"), "not-an-email", "data.contact.email"),
        (("data", "contact", "timezone"), "Mars/Olympus", "data.contact.timezone"),
        (("data", "contact", "locale"), "english please", "data.contact.locale"),
        (("data", "contact", "first_name"), "x" * 201, "data.contact.first_name"),
        (("data", "deal"), {"amount": "-1"}, "data.deal.amount"),
        (("data", "deal"), {"amount": "lots"}, "data.deal.amount"),
        (("data", "deal"), {"currency": "EURO"}, "data.deal.currency"),
        (("data", "feedback"), {"rating": 1000}, "data.feedback.rating"),
    ],
)
def test_invalid_fields_are_named(path: tuple[str, ...], value: Any, field: str) -> None:
    doc = event_doc()
    target = doc
    for key in path[:-1]:
        target = target.setdefault(key, {})
    target[path[-1]] = value
    assert field in problems(doc)


@pytest.mark.parametrize("doc", [[], "deal.closed", 42, None, {}])
def test_documents_that_are_not_events(doc: Any) -> None:
    assert problems(doc)


def test_unknown_extra_fields_are_kept_not_rejected() -> None:
    doc = event_doc()
    doc["data"]["contact"]["hubspot_score"] = 87
    event = validate_event(doc)
    assert event.model_dump()["data"]["contact"]["hubspot_score"] == 87
