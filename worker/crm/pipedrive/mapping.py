"""Which Pipedrive changes are Thankly events, and what they carry (no API calls here).

- A deal whose `status` changed: won → `deal.closed`, lost → `deal.lost`, won/lost back to
  open → `deal.reopened`.
- Feedback and referrals, each by whichever means a business uses (all optional):
  a deal field set to a value (THANKLY_PIPEDRIVE_FEEDBACK_FIELD: a rating;
  _REFERRAL_FIELD: the referred person's name); an activity of a given type marked done
  (_FEEDBACK_ACTIVITY_TYPE, _REFERRAL_ACTIVITY_TYPE: the subject is the referred name, or
  starts with the rating, and the activity's note is the feedback text); a note that
  begins with a tag (_FEEDBACK_NOTE_TAG such as `#feedback 3 Delivery was late`,
  _REFERRAL_NOTE_TAG such as `#referral Jan Kowalski`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any

from worker.settings import Settings

_STATUS_KINDS = {"won": "deal.closed", "lost": "deal.lost"}
_RATING = re.compile(r"^\s*(\d{1,3})(?:\s*/\s*\d{1,3})?(?![\d.,])\s*[-\u2013\u2014:]?\s*")


@dataclass(frozen=True)
class Mapping:
    feedback_field: str | None = None
    referral_field: str | None = None
    feedback_activity: str | None = None
    referral_activity: str | None = None
    feedback_tag: str | None = None
    referral_tag: str | None = None

    @classmethod
    def from_settings(cls, s: Settings) -> Mapping:
        return cls(
            s.pipedrive_feedback_field,
            s.pipedrive_referral_field,
            s.pipedrive_feedback_activity_type,
            s.pipedrive_referral_activity_type,
            s.pipedrive_feedback_note_tag,
            s.pipedrive_referral_note_tag,
        )


def deal_kind(data: Any, previous: Any) -> str | None:
    """deal.closed / deal.lost / deal.reopened when the deal's status changed, else None."""
    if not isinstance(data, dict) or not isinstance(previous, dict):
        return None
    if "status" not in previous or previous["status"] == data.get("status"):
        return None
    status = data.get("status")
    if status in _STATUS_KINDS:
        return _STATUS_KINDS[status]
    if status == "open" and previous["status"] in _STATUS_KINDS:
        return "deal.reopened"
    return None


def field_value(record: Any, key: str) -> Any:
    """A deal field's value in a webhook v2 `data` or `previous`: custom fields sit under
    `custom_fields` ({"type", "value"} or the bare value), standard ones at the top."""
    if not isinstance(record, dict):
        return None
    custom = record.get("custom_fields")
    if isinstance(custom, dict) and key in custom:
        value = custom[key]
        return value.get("value") if isinstance(value, dict) else value
    return record.get(key)


def changed_field(payload: dict[str, Any], key: str | None) -> Any:
    """The field's new value when this change set it, else None."""
    if not key:
        return None
    previous, data = payload.get("previous"), payload.get("data")
    if not isinstance(previous, dict):
        return None
    in_previous = key in previous or key in (previous.get("custom_fields") or {})
    new = field_value(data, key)
    if not in_previous or new in (None, "") or new == field_value(previous, key):
        return None
    return new


def _done_now(payload: dict[str, Any]) -> bool:
    """An activity created done, or changed from not done to done."""
    data, previous = payload.get("data") or {}, payload.get("previous")
    if not data.get("done"):
        return False
    action = (payload.get("meta") or {}).get("action")
    if action == "create":
        return True
    return action == "change" and isinstance(previous, dict) and previous.get("done") is False


def _tagged(payload: dict[str, Any], tag: str | None) -> str | None:
    """A new note's text after `tag`, when it begins with it."""
    if not tag or (payload.get("meta") or {}).get("action") != "create":
        return None
    text = plain_text(str((payload.get("data") or {}).get("content") or ""))
    if not text.lower().startswith(tag.lower()):
        return None
    return text[len(tag) :].strip()


def event_kind(payload: dict[str, Any], mapping: Mapping) -> str | None:
    meta = payload.get("meta") or {}
    entity, data = meta.get("entity"), payload.get("data") or {}
    if entity == "deal" and meta.get("action") == "change":
        kind = deal_kind(data, payload.get("previous"))
        if kind:
            return kind
        if changed_field(payload, mapping.feedback_field) is not None:
            return "feedback.logged"
        if changed_field(payload, mapping.referral_field) is not None:
            return "referral.made"
    if entity == "activity" and _done_now(payload):
        if mapping.feedback_activity and data.get("type") == mapping.feedback_activity:
            return "feedback.logged"
        if mapping.referral_activity and data.get("type") == mapping.referral_activity:
            return "referral.made"
    if entity == "note":
        if _tagged(payload, mapping.feedback_tag) is not None:
            return "feedback.logged"
        if _tagged(payload, mapping.referral_tag) is not None:
            return "referral.made"
    return None


def record_ids(payload: dict[str, Any]) -> tuple[str | None, str | None]:
    """(deal id, person id) the event is about."""
    meta, data = payload.get("meta") or {}, payload.get("data") or {}
    if meta.get("entity") == "deal":
        return str(data["id"]), None
    person = data.get("person_id")
    for participant in data.get("participants") or []:
        if isinstance(participant, dict) and participant.get("primary"):
            person = person or participant.get("person_id")
    deal = data.get("deal_id")
    return (str(deal) if deal else None), (str(person) if person else None)


def rated(text: str) -> tuple[int | None, str]:
    """A leading rating (`3`, `9/10`, `7 - great`) and the rest of the text."""
    match = _RATING.match(text)
    if not match or int(match.group(1)) > 100:
        return None, text.strip()
    return int(match.group(1)), text[match.end() :].strip()


def parts(kind: str, payload: dict[str, Any], mapping: Mapping) -> dict[str, Any]:
    """The `feedback` or `referral` part of the event; {} for deal-status events."""
    entity = (payload.get("meta") or {}).get("entity")
    data = payload.get("data") or {}
    event_id = f"pd-{(payload.get('meta') or {}).get('id')}"
    if kind == "feedback.logged":
        if entity == "deal":
            value = changed_field(payload, mapping.feedback_field)
            try:
                rating: int | None = round(float(value))
            except (TypeError, ValueError):
                raise ValueError(f"the feedback field is {value!r}, not a rating") from None
            return {"feedback": {"id": event_id, "rating": rating}}
        if entity == "activity":
            rating, rest = rated(str(data.get("subject") or ""))
            text = plain_text(str(data.get("note") or "")) or rest
        else:
            rating, text = rated(_tagged(payload, mapping.feedback_tag) or "")
        feedback = {"id": event_id, "rating": rating, "text": text[:5000] or None}
        return {"feedback": {k: v for k, v in feedback.items() if v is not None}}
    if kind == "referral.made":
        if entity == "deal":
            name = str(changed_field(payload, mapping.referral_field))
        elif entity == "activity":
            name = str(data.get("subject") or "")
        else:
            name = _tagged(payload, mapping.referral_tag) or ""
        return {"referral": {"referred_name": name.strip()[:200] or None}}
    return {}


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.chunks: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("br", "p", "div", "li"):
            self.chunks.append("\n")

    def handle_data(self, data: str) -> None:
        self.chunks.append(data)


def plain_text(markup: str) -> str:
    """Pipedrive stores notes as HTML; letters quote them as plain text."""
    parser = _Text()
    parser.feed(markup)
    parser.close()
    lines = (" ".join(line.split()) for line in "".join(parser.chunks).splitlines())
    return "\n".join(line for line in lines if line).strip()
