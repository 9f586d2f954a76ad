"""`POST /webhooks/amocrm?secret=…`: amoCRM's (Kommo's) lead-status webhooks.

amoCRM signs nothing. The webhook's URL carries an unguessable secret (THANKLY_AMOCRM_
WEBHOOK_SECRET, compared in constant time, never logged), and the body's account
(`account[subdomain]`, `account[id]`) must be the configured one; otherwise 401 and
nothing stored. A body is form-encoded and may hold several leads
(`leads[status][0][id]`, `…[status_id]`, `…[old_status_id]`, …): each status change is
one inbox row, keyed on (account, lead, status, time). Status 142 (won, in every
pipeline) is `deal.closed`, 143 (lost) `deal.lost`, and a lead leaving 142 or 143 for
another status `deal.reopened`. At ingest the lead, its main contact and the responsible
user are read through API v4.
"""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import cached_property
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from worker.crm.amocrm.api import LOST, WON, AmoCrmApi, from_settings
from worker.crm.reconcile import WonDeal
from worker.events import GenericEvent, validate_event
from worker.intake.forms import form_problem, parse_form
from worker.intake.sources import NotConnected, RawEvent, Refused, SourceNotReady
from worker.settings import Settings

NAME = "amocrm"
_LEAD = re.compile(r"^leads\[status\]\[(\d{1,4})\]\[(\w+)\]$")
_NUMBER = re.compile(r"^\d{1,18}$")


def lead_kind(status: int, old_status: int | None) -> str | None:
    if status == WON:
        return "deal.closed"
    if status == LOST:
        return "deal.lost"
    if old_status in (WON, LOST):
        return "deal.reopened"
    return None


def main_email(contact: dict[str, Any]) -> str | None:
    """The contact's first address (the EMAIL field; work addresses first)."""
    for field in contact.get("custom_fields_values") or []:
        if isinstance(field, dict) and field.get("field_code") == "EMAIL":
            values = [v for v in field.get("values") or [] if v.get("value")]
            values.sort(key=lambda v: v.get("enum_code") != "WORK")
            if values:
                return str(values[0]["value"]).strip()
    return None


class AmoCrmSource:
    name = NAME

    def __init__(self, settings: Settings) -> None:
        assert settings.amocrm_subdomain and settings.amocrm_webhook_secret is not None
        self.settings = settings
        self.subdomain = settings.amocrm_subdomain.strip().lower()
        self._secret = settings.amocrm_webhook_secret.get_secret_value().encode()

    @cached_property
    def api(self) -> AmoCrmApi:
        return from_settings(self.settings)

    def prepare(self) -> None:
        if self.settings.amocrm_token is None:
            raise SourceNotReady(
                "THANKLY_AMOCRM_WEBHOOK_SECRET is set but THANKLY_AMOCRM_TOKEN is not: "
                "amoCRM webhooks carry no address, and the token reads the lead's contact"
            )

    def media_type_problem(self, content_type: str | None) -> str | None:
        return form_problem(content_type)

    def receive(
        self, headers: Mapping[str, str], body: bytes, now: datetime, target: str = ""
    ) -> list[RawEvent]:
        query = dict(parse_qsl(urlsplit(target).query))
        given = query.get("secret", "").encode()
        if not hmac.compare_digest(given, self._secret):
            raise Refused(401, "missing or wrong secret in the webhook URL")
        fields = parse_form(body)
        account_id = fields.get("account[id]", "")
        wrong_id = self.settings.amocrm_account_id and account_id != self.settings.amocrm_account_id
        if fields.get("account[subdomain]", "").lower() != self.subdomain or wrong_id:
            raise Refused(401, "not the configured amoCRM account")
        leads: dict[str, dict[str, str]] = {}
        for key, value in fields.items():
            match = _LEAD.match(key)
            if match:
                leads.setdefault(match.group(1), {})[match.group(2)] = value
        events = []
        for index, lead in sorted(leads.items(), key=lambda item: int(item[0])):
            bad = [k for k in ("id", "status_id") if not _NUMBER.match(lead.get(k, ""))]
            bad += [k for k in ("old_status_id", "last_modified", "updated_at")
                    if lead.get(k) and not _NUMBER.match(lead[k])]  # fmt: skip
            if bad:
                problems = [{"field": f"leads[status][{index}][{k}]", "message": "must be a number"}
                            for k in bad]  # fmt: skip
                raise Refused(422, "not a valid amoCRM lead", {"problems": problems})
            old = int(lead["old_status_id"]) if lead.get("old_status_id") else None
            if lead_kind(int(lead["status_id"]), old) is None:
                continue
            when = lead.get("last_modified") or lead.get("updated_at") or str(int(now.timestamp()))
            raw = {"account_id": account_id, "lead_id": lead["id"],
                   "status_id": int(lead["status_id"]), "old_status_id": old, "at": int(when),
                   "responsible_user_id": lead.get("responsible_user_id")}  # fmt: skip
            event_id = f"amo:{account_id}:{lead['id']}:{lead['status_id']}:{when}"
            events.append(RawEvent(event_id, json.dumps(raw, sort_keys=True)))
        return events

    def translate(self, raw: str) -> GenericEvent:
        event = json.loads(raw)
        kind = lead_kind(int(event["status_id"]), event.get("old_status_id"))
        if kind is None:
            raise ValueError("not a status change Thankly acts on")
        lead_id = str(event["lead_id"])
        occurred = datetime.fromtimestamp(int(event["at"]), tz=UTC)
        data = self._enriched(lead_id) if kind == "deal.closed" else {"deal": {"id": lead_id}}
        return validate_event({"type": kind, "timestamp": occurred.isoformat(), "data": data})

    def _enriched(self, lead_id: str) -> dict[str, Any]:
        lead = self.api.lead(lead_id)
        links = (lead.get("_embedded") or {}).get("contacts") or []
        links = sorted(links, key=lambda c: not c.get("is_main"))
        if not links:
            raise ValueError(f"amoCRM lead {lead_id} has no contact")
        contact_id = str(links[0]["id"])
        contact = self.api.contact(contact_id)
        email = main_email(contact)
        if not email:
            raise ValueError(f"amoCRM contact {contact_id} has no email address")
        price = lead.get("price")
        data: dict[str, Any] = {
            "contact": {
                "id": contact_id,
                "email": email,
                "first_name": contact.get("first_name") or contact.get("name") or None,
                "last_name": contact.get("last_name") or None,
                "locale": self.settings.amocrm_locale,
                "timezone": self.settings.amocrm_timezone,
            },
            "deal": {
                "id": lead_id,
                "number": lead_id,
                "title": lead.get("name") or None,
                "amount": str(price) if price not in (None, "") else None,
                "currency": self.settings.amocrm_currency if price not in (None, "") else None,
            },
        }
        owner_id = lead.get("responsible_user_id")
        owner = self.api.user(str(owner_id)) if owner_id else None
        if owner:
            data["owner"] = {"name": owner.get("name") or None, "email": owner.get("email") or None}
        return data

    def won_since(self, since: datetime) -> list[WonDeal]:
        """Leads now in status 142 updated since `since`, each as the status webhook amoCRM
        would have posted (worker.crm.reconcile decides which ones were missed)."""
        found = []
        for lead in self.api.leads_updated_since(since):
            if lead.get("status_id") != WON:
                continue
            at = int(lead.get("closed_at") or lead.get("updated_at") or 0)
            if not at:
                continue
            account = str(lead.get("account_id") or self.settings.amocrm_account_id or "")
            raw = {"account_id": account, "lead_id": str(lead["id"]), "status_id": WON,
                   "old_status_id": None, "at": at, "reconciled": True,
                   "responsible_user_id": lead.get("responsible_user_id")}  # fmt: skip
            event_id = f"amo:{account}:reconcile:{lead['id']}:{at}"
            won_at = datetime.fromtimestamp(at, tz=UTC)
            found.append(WonDeal(str(lead["id"]), won_at, RawEvent(event_id, json.dumps(raw))))
        return found


def build(settings: Settings) -> AmoCrmSource | NotConnected:
    if not settings.amocrm_subdomain or settings.amocrm_webhook_secret is None:
        return NotConnected(
            NAME, "amoCRM", "THANKLY_AMOCRM_SUBDOMAIN and THANKLY_AMOCRM_WEBHOOK_SECRET"
        )
    return AmoCrmSource(settings)
