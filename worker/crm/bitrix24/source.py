"""`POST /webhooks/bitrix24`: a portal's outbound webhook (ONCRMDEALUPDATE, ONCRMDEALADD).

Bitrix24 signs nothing. Its outbound webhook posts a form with `auth[application_token]`
(shown when the webhook is created) and `auth[domain]`: both must match the configured
ones, the token compared in constant time, or the request is refused and nothing stored.
The event carries only the deal's id (`data[FIELDS][ID]`) and a time (`ts`): each is stored
under (portal, event, deal, ts) and answered at once. At ingest the deal and its contacts
are read in one `batch` call: a deal in a won stage (STAGE_SEMANTIC_ID `S`) is
`deal.closed`, a lost one (`F`) `deal.lost`, one in progress (`P`) `deal.reopened`, which
cancels a pending letter if the deal had been won. Bitrix24 posts an update for every
edit: a won deal edited again is the same win, which the planner recognises (one letter).
Bitrix24 never retries an event, so reconciliation is not optional here.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

from worker.crm.bitrix24.api import METHODS, Bitrix24Api, from_settings
from worker.crm.reconcile import WonDeal
from worker.events import GenericEvent, validate_event
from worker.intake.forms import form_problem, parse_form
from worker.intake.sources import NotConnected, RawEvent, Refused, SourceNotReady
from worker.settings import Settings

NAME = "bitrix24"
EVENTS = ("ONCRMDEALUPDATE", "ONCRMDEALADD")
_KINDS = {"S": "deal.closed", "F": "deal.lost"}


def portal_domain(value: str) -> str:
    """`https://Acme.bitrix24.ru/` and `acme.bitrix24.ru` are the same portal."""
    return value.strip().lower().removeprefix("https://").removeprefix("http://").rstrip("/")


def first_email(contact: dict[str, Any]) -> str | None:
    """The contact's first address (work addresses first, as the card shows them)."""
    emails = [e for e in contact.get("EMAIL") or [] if isinstance(e, dict) and e.get("VALUE")]
    emails.sort(key=lambda e: e.get("VALUE_TYPE") != "WORK")
    return str(emails[0]["VALUE"]).strip() if emails else None


class Bitrix24Source:
    name = NAME

    def __init__(self, settings: Settings) -> None:
        assert settings.bitrix24_portal and settings.bitrix24_app_token is not None
        self.settings = settings
        self.portal = portal_domain(settings.bitrix24_portal)
        self._token = settings.bitrix24_app_token.get_secret_value().encode()

    @cached_property
    def api(self) -> Bitrix24Api:
        return from_settings(self.settings)

    def prepare(self) -> None:
        if self.settings.bitrix24_rest_url is None:
            raise SourceNotReady(
                "THANKLY_BITRIX24_APP_TOKEN is set but THANKLY_BITRIX24_REST_URL is "
                "not: Bitrix24 events carry only the deal's id, and the incoming webhook reads it"
            )

    def media_type_problem(self, content_type: str | None) -> str | None:
        return form_problem(content_type)

    def receive(
        self, headers: Mapping[str, str], body: bytes, now: datetime, target: str = ""
    ) -> list[RawEvent]:
        fields = parse_form(body)
        given = fields.get("auth[application_token]", "").encode()
        domain = portal_domain(fields.get("auth[domain]", ""))
        token_ok = hmac.compare_digest(given, self._token)
        if not token_ok or domain != self.portal:
            raise Refused(401, "wrong application token or portal")
        event = fields.get("event", "").upper()
        if event not in EVENTS:
            return []
        deal_id, ts = fields.get("data[FIELDS][ID]", ""), fields.get("ts", "")
        problems = [
            {"field": name, "message": "must be a number"}
            for name, value in (("data[FIELDS][ID]", deal_id), ("ts", ts))
            if not (value.isascii() and value.isdigit() and len(value) <= 18)
        ]
        if problems:
            raise Refused(422, "not a valid Bitrix24 event", {"problems": problems})
        raw = {"event": event, "deal_id": deal_id, "ts": int(ts), "domain": domain}
        return [RawEvent(f"b24:{domain}:{event}:{deal_id}:{ts}", json.dumps(raw, sort_keys=True))]

    def translate(self, raw: str) -> GenericEvent:
        event = json.loads(raw)
        deal_id = str(event["deal_id"])
        occurred = datetime.fromtimestamp(int(event["ts"]), tz=UTC)
        found = self.api.batch(
            {
                "deal": (METHODS["deal"], {"id": deal_id}),
                "contacts": (METHODS["deal_contacts"], {"id": deal_id}),
            }
        )
        deal = found.get("deal") or {}
        kind = _KINDS.get(str(deal.get("STAGE_SEMANTIC_ID")), "deal.reopened")
        if kind != "deal.closed":
            data: dict[str, Any] = {"deal": {"id": deal_id}}
        else:
            data = self._enriched(deal_id, deal, found.get("contacts") or [])
        return validate_event({"type": kind, "timestamp": occurred.isoformat(), "data": data})

    def _enriched(
        self, deal_id: str, deal: dict[str, Any], links: list[dict[str, Any]]
    ) -> dict[str, Any]:
        links = sorted(links, key=lambda c: (c.get("IS_PRIMARY") != "Y", int(c.get("SORT") or 0)))
        contact_id = str(links[0]["CONTACT_ID"]) if links else str(deal.get("CONTACT_ID") or "")
        if not contact_id or contact_id == "0":
            raise ValueError(f"Bitrix24 deal {deal_id} has no contact")
        calls = {"contact": (METHODS["contact"], {"id": contact_id})}
        owner_id = str(deal.get("ASSIGNED_BY_ID") or "")
        if owner_id:
            calls["user"] = (METHODS["user"], {"ID": owner_id})
        found = self.api.batch(calls)
        contact = found.get("contact") or {}
        email = first_email(contact)
        if not email:
            raise ValueError(f"Bitrix24 contact {contact_id} has no email address")
        data: dict[str, Any] = {
            "contact": {
                "id": contact_id,
                "email": email,
                "first_name": contact.get("NAME") or None,
                "last_name": contact.get("LAST_NAME") or None,
                "locale": self.settings.bitrix24_locale,
                "timezone": self.settings.bitrix24_timezone,
            },
            "deal": {
                "id": deal_id,
                "number": deal_id,
                "title": deal.get("TITLE") or None,
                "amount": deal.get("OPPORTUNITY") or None,
                "currency": deal.get("CURRENCY_ID") or None,
            },
        }
        users = found.get("user") or []
        if users:
            user = users[0]
            name = " ".join(p for p in (user.get("NAME"), user.get("LAST_NAME")) if p)
            data["owner"] = {"name": name or None, "email": user.get("EMAIL") or None}
        return data

    def won_since(self, since: datetime) -> list[WonDeal]:
        """Deals in a won stage changed since `since`, each as the update event Bitrix24
        would have posted (worker.crm.reconcile decides which ones were missed)."""
        found = []
        for deal in self.api.deals_won_since(since.astimezone(UTC).isoformat()):
            try:
                won_at = datetime.fromisoformat(str(deal.get("DATE_MODIFY")))
            except ValueError:
                continue
            won_at = won_at if won_at.tzinfo else won_at.replace(tzinfo=UTC)
            ts = int(won_at.timestamp())
            raw = {"event": "ONCRMDEALUPDATE", "deal_id": str(deal["ID"]), "ts": ts,
                   "domain": self.portal, "reconciled": True}  # fmt: skip
            event_id = f"b24:{self.portal}:reconcile:{deal['ID']}:{ts}"
            found.append(WonDeal(str(deal["ID"]), won_at, RawEvent(event_id, json.dumps(raw))))
        return found


def build(settings: Settings) -> Bitrix24Source | NotConnected:
    if not settings.bitrix24_portal or settings.bitrix24_app_token is None:
        return NotConnected(
            NAME, "Bitrix24", "THANKLY_BITRIX24_PORTAL and THANKLY_BITRIX24_APP_TOKEN"
        )
    return Bitrix24Source(settings)
