"""The JSON Schema of the generic event, generated from the pydantic model in worker/events.py.

`thankly events schema` prints it and `make schema` writes it to docs/event.schema.json,
where CRM integrators find it; a test fails when the checked-in file drifts from the model.

Pydantic describes the fields; what it cannot see is added here: which fields each event
type requires (a model validator checks that at run time) and that emails are emails.
"""

from __future__ import annotations

import json
from typing import Any

from worker.events import CANCEL_EVENT_TYPES, LETTER_EVENT_TYPES, GenericEvent

DIALECT = "https://json-schema.org/draft/2020-12/schema"
SUPPRESS_EVENT_TYPES = ("contact.unsubscribed",)
_ZONED_TIME = r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([Zz]|[+-]\d{2}:?\d{2})$"


def _has(section: str, key: str) -> dict[str, Any]:
    """`data.<section>.<key>` is present and a non-empty string."""
    return {
        "required": [section],
        "properties": {
            section: {
                "type": "object",
                "required": [key],
                "properties": {key: {"type": "string", "minLength": 1}},
            }
        },
    }


def _when_type(types: list[str], data: dict[str, Any]) -> dict[str, Any]:
    return {
        "if": {"required": ["type"], "properties": {"type": {"enum": types}}},
        "then": {"properties": {"data": data}},
    }


def _by_type() -> list[dict[str, Any]]:
    needs_email = sorted(LETTER_EVENT_TYPES) + list(SUPPRESS_EVENT_TYPES)
    return [
        _when_type(needs_email, _has("contact", "email")),
        _when_type(
            sorted(CANCEL_EVENT_TYPES),
            {"anyOf": [_has("deal", "id"), _has("contact", "email")]},
        ),
    ]


def _mark_emails(defs: dict[str, Any]) -> None:
    for name in ("Contact", "Owner"):
        email = defs[name]["properties"]["email"]
        for option in email["anyOf"]:
            if option.get("type") == "string":
                option["format"] = "email"


def event_schema() -> dict[str, Any]:
    """The schema as a dict: the model's own, plus the per-type requirements."""
    generated = GenericEvent.model_json_schema(mode="validation")
    _mark_emails(generated["$defs"])
    timestamp = generated["properties"]["timestamp"]
    timestamp["description"] = (
        "When it happened in the CRM, ISO 8601 with a UTC offset or Z; delays count from it"
    )
    # "format: date-time" is only advisory in most validators; a time without a zone is
    # ambiguous and refused by the parser, so the schema says so with a pattern too.
    timestamp["pattern"] = _ZONED_TIME
    generated["properties"]["type"]["description"] = (
        "Letter events plan a letter; deal.reopened and deal.lost cancel pending letters; "
        "contact.unsubscribed suppresses the address"
    )
    return {
        "$schema": DIALECT,
        "title": "Thankly generic event",
        "description": (
            "The body of POST /webhooks/generic. The event id is the webhook-id header, "
            "not a body field. Unknown extra fields are kept, not rejected."
        ),
        **{key: value for key, value in generated.items() if key != "title"},
        "allOf": _by_type(),
    }


def schema_text() -> str:
    """Exactly what docs/event.schema.json holds (stable key order, trailing newline)."""
    return json.dumps(event_schema(), indent=2, ensure_ascii=False) + "\n"
