"""A second webhook source, added in this one module without touching intake.

It imitates the shape of Bitrix24's and amoCRM's outbound webhooks: a form-encoded body,
a shared token among the fields (checked in constant time), several events in one request,
and only ids, so each event is enriched through the CRM's API at ingest. `FakeCrmApi`
stands in for that API and can be told to fail.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs

from worker.events import GenericEvent, validate_event
from worker.intake.sources import RawEvent, Refused
from worker.retry import CallError

NAME = "testform"
TOKEN = "form-token-1"


@dataclass
class FakeCrmApi:
    """Deals by id, and failures to raise before answering (the next call raises the first)."""

    deals: dict[str, dict[str, Any]] = field(default_factory=dict)
    failures: list[CallError] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)

    def deal(self, deal_id: str) -> dict[str, Any]:
        self.calls.append(deal_id)
        if self.failures:
            raise self.failures.pop(0)
        if deal_id not in self.deals:
            raise CallError(f"404 deal {deal_id} not found", permanent=True)
        return self.deals[deal_id]


class FormSource:
    name = NAME

    def __init__(self, api: FakeCrmApi) -> None:
        self.api = api

    def prepare(self) -> None:
        pass

    def media_type_problem(self, content_type: str | None) -> str | None:
        media = (content_type or "").split(";", 1)[0].strip().lower()
        if media == "application/x-www-form-urlencoded":
            return None
        return "Content-Type must be application/x-www-form-urlencoded"

    def receive(
        self, headers: Mapping[str, str], body: bytes, now: datetime, target: str = ""
    ) -> list[RawEvent]:
        try:
            fields = parse_qs(body.decode("ascii"), strict_parsing=True)
        except (UnicodeDecodeError, ValueError):
            raise Refused(400, "malformed form body") from None
        token = (fields.get("token") or [""])[0]
        if not hmac.compare_digest(token.encode(), TOKEN.encode()):
            raise Refused(401, "bad token")
        ids = fields.get("deal_id", [])
        if any(not i.isdigit() for i in ids):
            raise Refused(422, "not a valid event", {"problems": [{"field": "deal_id"}]})
        stamp = (fields.get("ts") or [""])[0]
        return [RawEvent(f"deal-{i}-{stamp}", json.dumps({"deal": i, "ts": stamp})) for i in ids]

    def translate(self, raw: str) -> GenericEvent:
        stored = json.loads(raw)
        deal = self.api.deal(stored["deal"])  # enrichment: the webhook carried only the id
        event = {
            "type": "deal.closed",
            "timestamp": stored["ts"],
            "data": {"contact": deal["contact"], "deal": {"id": stored["deal"], **deal["deal"]}},
        }
        return validate_event(event)
