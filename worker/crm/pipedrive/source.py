"""`POST /webhooks/pipedrive`: Pipedrive's webhooks (v2), turned into deal events.

Pipedrive signs nothing; a webhook is created with an HTTP basic-auth user and password,
checked here in constant time. A v2 body is one object `{meta, data, previous}`; a deal
`change` whose `previous` holds a `status` moved between open, won and lost: won is
`deal.closed`, lost `deal.lost`, back to open `deal.reopened`. Every other change is
acknowledged and dropped. Each event is stored under `meta.id` (v2 sends one webhook per
change; a retry repeats the id) and answered at once: Pipedrive waits 10 s and bans a
webhook that fails ten times, dropping events meanwhile. The person's address, the owner
and the amount are read through the API at ingest, after the answer.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from collections.abc import Mapping as Headers
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

from worker.crm.pipedrive.api import PipedriveApi, from_settings
from worker.crm.pipedrive.mapping import Mapping, event_kind, parts, record_ids
from worker.crm.reconcile import WonDeal
from worker.events import GenericEvent, validate_event
from worker.intake.generic import is_json, parse_json
from worker.intake.sources import NotConnected, RawEvent, Refused, SourceNotReady
from worker.settings import Settings

NAME = "pipedrive"


def occurred_at(stamp: Any) -> datetime:
    """`meta.timestamp` as Pipedrive sends it: integer seconds, or an ISO 8601 string."""
    if isinstance(stamp, bool):
        raise ValueError("a boolean is not a time")
    if isinstance(stamp, int | float) or (isinstance(stamp, str) and stamp.isdigit()):
        return datetime.fromtimestamp(int(stamp), tz=UTC)
    if isinstance(stamp, str):
        when = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
        return when if when.tzinfo else when.replace(tzinfo=UTC)
    raise ValueError("meta.timestamp is neither seconds nor an ISO 8601 time")


def primary_email(person: dict[str, Any]) -> str | None:
    """v2 persons list `emails`, v1 `email`: the primary one, else the first."""
    emails = person.get("emails") or person.get("email") or []
    if isinstance(emails, str):
        return emails or None
    values = [e for e in emails if isinstance(e, dict) and e.get("value")]
    chosen = next((e for e in values if e.get("primary")), values[0] if values else None)
    return str(chosen["value"]) if chosen else None


class PipedriveSource:
    name = NAME

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.mapping = Mapping.from_settings(settings)
        user, password = settings.pipedrive_webhook_user, settings.pipedrive_webhook_password
        assert user and password is not None
        self._expected = f"{user}:{password.get_secret_value()}".encode()

    @cached_property
    def api(self) -> PipedriveApi:
        return from_settings(self.settings)

    def prepare(self) -> None:
        if self.settings.pipedrive_token is None:
            raise SourceNotReady(
                "THANKLY_PIPEDRIVE_WEBHOOK_USER is set but THANKLY_PIPEDRIVE_TOKEN is not: "
                "the token reads the deal's person and owner"
            )

    def media_type_problem(self, content_type: str | None) -> str | None:
        return None if is_json(content_type) else "Content-Type must be application/json"

    def receive(
        self, headers: Headers[str, str], body: bytes, now: datetime, target: str = ""
    ) -> list[RawEvent]:
        self._authenticate(headers.get("authorization", ""))
        payload = parse_json(body)
        meta = payload.get("meta") if isinstance(payload, dict) else None
        if not isinstance(meta, dict):
            raise Refused(422, "not a Pipedrive webhook: expected {meta, data, previous}")
        if str(meta.get("version", "")).split(".")[0] != "2":
            raise Refused(422, "a Pipedrive webhooks v1 body: create the webhook as version 2.0")
        if meta.get("id") in (None, ""):
            raise Refused(422, "not a valid Pipedrive webhook", {"problems": [_required("id")]})
        try:
            occurred_at(meta.get("timestamp"))
        except (ValueError, OverflowError, OSError):
            raise Refused(
                422, "not a valid Pipedrive webhook", {"problems": [_required("timestamp")]}
            ) from None
        if not isinstance(payload.get("data"), dict):
            return []  # a deletion (`data` is null), or nothing Thankly could read
        if not isinstance(payload.get("previous"), dict | None):
            payload["previous"] = None
        if event_kind(payload, self.mapping) is None:
            return []
        event_id = f"pd:{meta.get('company_id', '')}:{meta['id']}"
        return [RawEvent(event_id, json.dumps(payload, sort_keys=True, ensure_ascii=False))]

    def _authenticate(self, header: str) -> None:
        scheme, _, value = header.partition(" ")
        try:
            given = base64.b64decode(value.strip(), validate=True)
        except (binascii.Error, ValueError):
            given = b""
        if scheme.lower() != "basic" or not hmac.compare_digest(given, self._expected):
            raise Refused(401, "missing or wrong basic-auth credentials")

    def won_since(self, since: datetime) -> list[WonDeal]:
        """Won deals updated since `since`, each as the status change its webhook would
        have been (worker.crm.reconcile decides which ones were missed)."""
        found = []
        for deal in self.api.won_deals(since):
            try:
                won_at = occurred_at(deal.get("won_time") or deal.get("update_time"))
            except (ValueError, OverflowError, OSError):
                continue
            stamp = won_at.isoformat().replace("+00:00", "Z")
            meta_id = f"reconcile:{deal['id']}:{stamp}"
            body = {
                "meta": {"action": "change", "entity": "deal", "version": "2.0", "id": meta_id,
                         "entity_id": str(deal["id"]), "timestamp": stamp,
                         "change_source": "thankly-reconciliation"},
                "data": deal,
                "previous": {"status": "open"},
            }  # fmt: skip
            raw = RawEvent(f"pd::{meta_id}", json.dumps(body, sort_keys=True, ensure_ascii=False))
            found.append(WonDeal(str(deal["id"]), won_at, raw))
        return found

    def translate(self, raw: str) -> GenericEvent:
        payload = json.loads(raw)
        kind = event_kind(payload, self.mapping)
        if kind is None:
            raise ValueError("not a Pipedrive change Thankly acts on")
        deal_id, person_id = record_ids(payload)
        occurred = occurred_at(payload["meta"]["timestamp"])
        if kind in ("deal.lost", "deal.reopened"):  # cancelling needs the deal id only
            data: dict[str, Any] = {"deal": {"id": deal_id}}
        else:
            data = self.enriched(deal_id, person_id) | parts(kind, payload, self.mapping)
        return validate_event({"type": kind, "timestamp": occurred.isoformat(), "data": data})

    def enriched(self, deal_id: str | None, person_id: str | None = None) -> dict[str, Any]:
        """The event's contact, deal and owner as Pipedrive has them now: the person asked
        for, else the deal's."""
        deal: dict[str, Any] = self.api.deal(deal_id) if deal_id else {}
        if not person_id:
            person_id = deal.get("person_id")
            if isinstance(person_id, dict):  # v1 shapes nest it
                person_id = person_id.get("value")
        if not person_id:
            raise ValueError(f"Pipedrive deal {deal_id} has no person")
        person = self.api.person(str(person_id))
        email = primary_email(person)
        if not email:
            raise ValueError(f"Pipedrive person {person_id} has no email address")
        data: dict[str, Any] = {
            "contact": {
                "id": str(person_id),
                "email": email,
                "first_name": person.get("first_name") or person.get("name"),
                "last_name": person.get("last_name"),
                "locale": self.settings.pipedrive_locale,
                "timezone": self.settings.pipedrive_timezone,
            },
        }
        if deal_id:
            data["deal"] = {
                "id": deal_id,
                "number": deal_id,
                "title": deal.get("title"),
                "amount": str(deal["value"]) if deal.get("value") not in (None, "") else None,
                "currency": deal.get("currency") or None,
            }
        owner_id = deal.get("owner_id") or deal.get("user_id")
        if isinstance(owner_id, dict):
            owner_id = owner_id.get("id")
        owner = self.api.user(str(owner_id)) if owner_id else None
        if owner:
            data["owner"] = {"name": owner.get("name"), "email": owner.get("email")}
        return data


def _required(field: str) -> dict[str, str]:
    return {"field": f"meta.{field}", "message": "required"}


def build(settings: Settings) -> PipedriveSource | NotConnected:
    if not settings.pipedrive_webhook_user or settings.pipedrive_webhook_password is None:
        return NotConnected(
            NAME,
            "Pipedrive",
            "THANKLY_PIPEDRIVE_WEBHOOK_USER and THANKLY_PIPEDRIVE_WEBHOOK_PASSWORD",
        )
    return PipedriveSource(settings)
