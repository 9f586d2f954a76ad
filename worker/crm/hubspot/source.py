"""`POST /webhooks/hubspot`: HubSpot's signed webhook batches, turned into deal events.

HubSpot signs each request (X-HubSpot-Signature-v3: base64 HMAC-SHA256 with the app's
client secret over method + URI + body + X-HubSpot-Request-Timestamp, the timestamp in
milliseconds). The URI is the one HubSpot called, so it is built from THANKLY_PUBLIC_URL
(a proxy changes the host) and the path and query as received, with the characters
HubSpot decodes decoded. A batch is a JSON array; each deal-stage change becomes one inbox
row, keyed on (portal, subscription, object, event id, time) since HubSpot does not
promise unique event ids and retries a batch up to 10 times. The webhook carries only ids:
the deal, its contacts and its owner are read through the API at ingest.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from worker.crm.hubspot.api import HubSpotApi, from_settings
from worker.crm.reconcile import WonDeal
from worker.events import GenericEvent, validate_event
from worker.intake.generic import is_json, parse_json
from worker.intake.sources import NotConnected, RawEvent, Refused, SourceNotReady
from worker.settings import Settings

NAME = "hubspot"
TOLERANCE_MS = 5 * 60 * 1000
# What HubSpot decodes in the URI before signing it.
_DECODED = {
    "%3A": ":", "%2F": "/", "%3F": "?", "%40": "@", "%21": "!", "%24": "$", "%27": "'",
    "%28": "(", "%29": ")", "%2A": "*", "%2C": ",", "%3B": ";",
}  # fmt: skip
_ENCODED = re.compile("|".join(_DECODED), re.IGNORECASE)
DEAL_TYPE_ID = "0-3"  # objectTypeId of deals in object.propertyChange events
CONTACT_TYPE_ID = "0-1"
_REQUIRED = ("eventId", "subscriptionId", "portalId", "occurredAt", "subscriptionType", "objectId")


def signed_uri(public_url: str, target: str) -> str:
    return _ENCODED.sub(lambda m: _DECODED[m.group(0).upper()], public_url.rstrip("/") + target)


def signature(secret: str, method: str, uri: str, body: bytes, timestamp: str) -> str:
    message = method.encode() + uri.encode() + body + timestamp.encode()
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def _stages(value: str) -> frozenset[str]:
    return frozenset(s.strip() for s in value.split(",") if s.strip())


class HubSpotSource:
    name = NAME

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.won = _stages(settings.hubspot_won_stages)
        self.lost = _stages(settings.hubspot_lost_stages)

    @cached_property
    def api(self) -> HubSpotApi:
        # prepare() stops the API without a token; a worker keeps the rows until it is set.
        return from_settings(self.settings)

    def prepare(self) -> None:
        if self.settings.hubspot_token is None:
            raise SourceNotReady(
                "THANKLY_HUBSPOT_CLIENT_SECRET is set but THANKLY_HUBSPOT_TOKEN is not: "
                "HubSpot webhooks carry only ids, and the token reads the deal"
            )

    def media_type_problem(self, content_type: str | None) -> str | None:
        return None if is_json(content_type) else "Content-Type must be application/json"

    def receive(
        self, headers: Mapping[str, str], body: bytes, now: datetime, target: str = ""
    ) -> list[RawEvent]:
        self._verify(headers, body, now, target)
        batch = parse_json(body)
        if not isinstance(batch, list) or not all(isinstance(e, dict) for e in batch):
            raise Refused(422, "not a HubSpot batch: expected a JSON array of events")
        events = []
        for index, event in enumerate(batch):
            missing = [k for k in _REQUIRED if event.get(k) in (None, "")]
            if missing:
                problems = [{"field": f"[{index}].{k}", "message": "required"} for k in missing]
                raise Refused(422, "not a valid HubSpot event", {"problems": problems})
            if self._kind(event) is None:
                continue  # another property, or a stage Thankly has nothing to do with
            key = ":".join(
                str(event[k])
                for k in ("portalId", "subscriptionId", "objectId", "eventId", "occurredAt")
            )
            # Kept without attemptNumber: HubSpot's retry of it is then the same row, quietly.
            kept = {k: v for k, v in event.items() if k != "attemptNumber"}
            events.append(RawEvent(f"hs:{key}", json.dumps(kept, sort_keys=True)))
        return events

    def _verify(self, headers: Mapping[str, str], body: bytes, now: datetime, target: str) -> None:
        secret = self.settings.hubspot_client_secret
        given = headers.get("x-hubspot-signature-v3")
        stamp = headers.get("x-hubspot-request-timestamp", "")
        if secret is None or not given or not (stamp.isascii() and stamp.isdigit()):
            raise Refused(401, "missing X-HubSpot-Signature-v3 or X-HubSpot-Request-Timestamp")
        if abs(now.timestamp() * 1000 - int(stamp)) > TOLERANCE_MS:
            raise Refused(401, "X-HubSpot-Request-Timestamp is more than 5 minutes off")
        uri = signed_uri(self.settings.public_url, target)
        expected = signature(secret.get_secret_value(), "POST", uri, body, stamp)
        if not hmac.compare_digest(expected.encode(), given.strip().encode()):
            raise Refused(401, "X-HubSpot-Signature-v3 does not match")

    def _kind(self, event: dict[str, Any]) -> str | None:
        """deal.closed / deal.lost / deal.reopened for a deal-stage change; feedback.logged
        / referral.made for a change of the configured contact property; else None."""
        kind = event.get("subscriptionType")
        of_type = str(event.get("objectTypeId"))
        is_deal = kind == "deal.propertyChange" or (
            kind == "object.propertyChange" and of_type == DEAL_TYPE_ID
        )
        is_contact = kind == "contact.propertyChange" or (
            kind == "object.propertyChange" and of_type == CONTACT_TYPE_ID
        )
        name = event.get("propertyName")
        if is_contact and name and event.get("propertyValue") not in (None, ""):
            if name == self.settings.hubspot_feedback_property:
                return "feedback.logged"
            if name == self.settings.hubspot_referral_property:
                return "referral.made"
        if not is_deal or name != "dealstage":
            return None
        stage = str(event.get("propertyValue") or "")
        if stage in self.won:
            return "deal.closed"
        if stage in self.lost:
            return "deal.lost"
        # Any other stage: a deal that was won is open again (a no-op for other deals).
        return "deal.reopened" if stage else None

    def won_since(self, since: datetime) -> list[WonDeal]:
        """Won deals changed since `since`, each as the stage change its webhook would
        have been (worker.crm.reconcile decides which ones were missed)."""
        found = []
        for deal in self.api.won_deals(sorted(self.won), int(since.timestamp() * 1000)):
            props = deal.get("properties") or {}
            changed = _time(props.get("hs_lastmodifieddate"))
            closed = _time(props.get("closedate"))
            if changed is None:
                continue
            # The close date is the won moment unless a person set it long before.
            won_at = (
                closed if closed and since - timedelta(days=1) <= closed <= changed else changed
            )
            won_ms = int(won_at.timestamp() * 1000)
            event = {
                "eventId": 0, "subscriptionId": 0, "portalId": 0, "attemptNumber": 0,
                "subscriptionType": "deal.propertyChange", "objectId": str(deal["id"]),
                "propertyName": "dealstage", "propertyValue": props.get("dealstage"),
                "occurredAt": won_ms, "changeSource": "THANKLY_RECONCILIATION",
            }  # fmt: skip
            raw = RawEvent(f"hs:reconcile:{deal['id']}:{won_ms}", json.dumps(event, sort_keys=True))
            found.append(WonDeal(str(deal["id"]), won_at, raw))
        return found

    def translate(self, raw: str) -> GenericEvent:
        event = json.loads(raw)
        kind = self._kind(event)
        if kind is None:
            raise ValueError("not a deal-stage change Thankly acts on")
        deal_id = str(event["objectId"])
        occurred = datetime.fromtimestamp(int(event["occurredAt"]) / 1000, tz=UTC)
        if kind in ("feedback.logged", "referral.made"):
            data: dict[str, Any] = self._contact_event(kind, event)
        elif kind != "deal.closed":  # cancelling needs the deal id only: no API call
            data = {"deal": {"id": deal_id}}
        else:
            data = self._enriched(deal_id)
        return validate_event({"type": kind, "timestamp": occurred.isoformat(), "data": data})

    def _contact_event(self, kind: str, event: dict[str, Any]) -> dict[str, Any]:
        """A contact's feedback or referral: the contact read through the API, the value
        from the webhook (what changed, even if it changed again since)."""
        contact_id = str(event["objectId"])
        text_property = self.settings.hubspot_feedback_text_property
        record = self.api.contact(contact_id, [text_property] if text_property else [])
        person = record.get("properties") or {}
        if not person.get("email"):
            raise ValueError(f"HubSpot contact {contact_id} has no email address")
        data: dict[str, Any] = {"contact": self._contact(contact_id, person)}
        value = str(event["propertyValue"]).strip()
        if kind == "referral.made":
            data["referral"] = {"referred_name": value[:200]}
            return data
        try:
            rating = round(float(value))
        except ValueError:
            raise ValueError(f"{event['propertyName']} is {value!r}, not a rating") from None
        feedback: dict[str, Any] = {
            "id": f"hs-{contact_id}-{event['occurredAt']}",
            "rating": rating,
        }
        if text_property and person.get(text_property):
            feedback["text"] = str(person[text_property])[:5000]
        data["feedback"] = feedback
        return data

    def _contact(self, contact_id: str, person: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": contact_id,
            "email": person["email"],
            "first_name": person.get("firstname"),
            "last_name": person.get("lastname"),
            "locale": person.get("hs_language") or self.settings.hubspot_locale,
            "timezone": _zone(person.get("hs_timezone")) or self.settings.hubspot_timezone,
        }

    def _enriched(self, deal_id: str) -> dict[str, Any]:
        deal = self.api.deal(deal_id)
        props = deal.get("properties") or {}
        links = ((deal.get("associations") or {}).get("contacts") or {}).get("results") or []
        ids = list(dict.fromkeys(str(link["id"]) for link in links if link.get("id")))
        contacts = [c for c in self.api.contacts(ids) if (c.get("properties") or {}).get("email")]
        if not contacts:
            raise ValueError(f"HubSpot deal {deal_id} has no associated contact with an email")
        person = contacts[0]["properties"]
        owner_id = props.get("hubspot_owner_id")
        owner = self.api.owner(str(owner_id)) if owner_id else None
        data: dict[str, Any] = {
            "contact": self._contact(str(contacts[0]["id"]), person),
            "deal": {
                "id": deal_id,
                "number": deal_id,
                "title": props.get("dealname"),
                "amount": props.get("amount") or None,
                "currency": props.get("deal_currency_code") or None,
            },
        }
        if owner:
            name = " ".join(p for p in (owner.get("firstName"), owner.get("lastName")) if p)
            data["owner"] = {"name": name or None, "email": owner.get("email")}
        return data


def _time(value: Any) -> datetime | None:
    """A HubSpot date-time property: ISO 8601, or milliseconds since the epoch."""
    text = str(value or "")
    try:
        if text.isdigit():
            return datetime.fromtimestamp(int(text) / 1000, tz=UTC)
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (ValueError, OverflowError):
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _zone(value: Any) -> str | None:
    """HubSpot writes time zones as `europe_slash_berlin`; IANA as `Europe/Berlin`."""
    if not value:
        return None
    parts = str(value).split("_slash_")
    name = "/".join("_".join(w.capitalize() for w in p.split("_")) for p in parts)
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None
    return name


def build(settings: Settings) -> HubSpotSource | NotConnected:
    if settings.hubspot_client_secret is None:
        return NotConnected(NAME, "HubSpot", "THANKLY_HUBSPOT_CLIENT_SECRET")
    return HubSpotSource(settings)
