"""docs/event.schema.json: generated from the model, checked in, and in agreement with the
parser the webhook really uses."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator, FormatChecker
from typer.testing import CliRunner

from tests.conftest import ROOT, SAMPLES
from tests.helpers import event_doc
from worker.cli.main import app
from worker.event_schema import event_schema, schema_text
from worker.events import InvalidEvent, parse_event_json, validate_event

SCHEMA_FILE = ROOT / "docs" / "event.schema.json"
VALIDATOR = Draft202012Validator(event_schema(), format_checker=FormatChecker())
EXAMPLES = sorted(SAMPLES.glob("*.json"))


def test_the_checked_in_schema_is_the_generated_one() -> None:
    assert SCHEMA_FILE.read_text(encoding="utf-8") == schema_text(), (
        "docs/event.schema.json is out of date with worker/events.py: run `make schema`"
    )


def test_events_schema_prints_exactly_the_file() -> None:
    result = CliRunner().invoke(app, ["events", "schema"], prog_name="thankly")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == SCHEMA_FILE.read_text(encoding="utf-8")


def test_it_is_a_valid_2020_12_schema() -> None:
    Draft202012Validator.check_schema(event_schema())
    assert event_schema()["$schema"] == "https://json-schema.org/draft/2020-12/schema"


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_passes_the_schema_and_the_parser(path: Path) -> None:
    raw = path.read_bytes()
    errors = [error.message for error in VALIDATOR.iter_errors(json.loads(raw))]
    assert errors == []
    assert parse_event_json(raw).type == json.loads(raw)["type"]


def _accepted_by_parser(doc: Any) -> bool:
    try:
        validate_event(doc)
    except InvalidEvent:
        return False
    return True


def _without(doc: dict[str, Any], section: str, key: str | None = None) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    if key is None:
        doc["data"].pop(section, None)
    else:
        doc["data"][section].pop(key, None)
    return doc


def _typed(event_type: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"type": event_type, "timestamp": "2026-11-20T10:00:00Z", "data": data}


# The schema adds per-type requirements the model enforces in code; each case below must be
# judged the same way by both, or integrators would be told something the server does not do.
AGREEMENT: list[tuple[str, dict[str, Any], bool]] = [
    *[
        (f"{t} without contact.email", _without(event_doc(t), "contact", "email"), False)
        for t in ("deal.closed", "feedback.logged", "referral.made", "contact.unsubscribed")
    ],
    ("deal.closed without a contact", _without(event_doc(), "contact"), False),
    ("deal.closed with only an email", event_doc(), True),
    ("deal.lost by deal id only", _typed("deal.lost", {"deal": {"id": "d-1"}}), True),
    (
        "deal.reopened by email only",
        _typed("deal.reopened", {"contact": {"email": "a@b.io"}}),
        True,
    ),
    ("deal.lost with neither", _typed("deal.lost", {"deal": {"title": "x"}}), False),
    ("deal.reopened with an empty deal id", _typed("deal.reopened", {"deal": {"id": ""}}), False),
    ("an unknown type", _typed("deal.won", {"contact": {"email": "a@b.io"}}), False),
    ("no timestamp", {"type": "deal.closed", "data": {"contact": {"email": "a@b.io"}}}, False),
    ("a timestamp with +0300", {**event_doc(), "timestamp": "2026-11-20T13:00:00+0300"}, True),
    ("a timestamp without a zone", {**event_doc(), "timestamp": "2026-11-20T10:00:00"}, False),
    ("an email without @", _typed("deal.closed", {"contact": {"email": "anna"}}), False),
    (
        "a negative amount",
        {**event_doc(), "data": {**event_doc()["data"], "deal": {"amount": -1}}},
        False,
    ),
    (
        "a five-letter currency",
        {**event_doc(), "data": {**event_doc()["data"], "deal": {"currency": "EUROS"}}},
        False,
    ),
    (
        "extra fields anywhere",
        {**event_doc(), "crm": "x", "data": {**event_doc()["data"], "x": 1}},
        True,
    ),
]


@pytest.mark.parametrize(
    ("doc", "valid"), [c[1:] for c in AGREEMENT], ids=[c[0] for c in AGREEMENT]
)
def test_schema_and_parser_agree(doc: dict[str, Any], valid: bool) -> None:
    assert VALIDATOR.is_valid(doc) is valid
    assert _accepted_by_parser(doc) is valid


def test_every_event_type_is_in_the_schema() -> None:
    types = set(event_schema()["properties"]["type"]["enum"])
    assert {json.loads(p.read_text())["type"] for p in EXAMPLES} == types
