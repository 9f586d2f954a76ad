"""An imitation of HubSpot's CRM API on 127.0.0.1, close enough to be told apart from a
careless client: the paths Thankly calls, the Bearer token, HubSpot's response shapes
(deal with `associations.contacts.results`, batch read `results` in any order, owners,
engagements with v4 associations, search with `paging.next.after`), and scripted failures
(429 with Retry-After and `policyName`, 5xx). Every request is kept, so a test can assert
each one."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tests.crm.imitation import Answer, Call, Imitation, serve

TOKEN = "pat-eu1-test-token"
# Engagement association types HubSpot defines, by (engagement, record).
ASSOCIATION_TYPES = {("emails", 198): "contact", ("emails", 210): "deal",
                     ("notes", 202): "contact", ("notes", 214): "deal"}  # fmt: skip


def _ms(iso: str) -> int:
    """HubSpot answers date-times as ISO 8601 and filters on milliseconds."""
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


def _ok(body: Any, status: int = 200) -> Answer:
    return status, {}, body


@dataclass
class HubSpotState(Imitation):
    deals: dict[str, dict[str, Any]] = field(default_factory=dict)
    contacts: dict[str, dict[str, Any]] = field(default_factory=dict)
    owners: dict[str, dict[str, Any]] = field(default_factory=dict)
    pipelines: list[dict[str, Any]] = field(default_factory=list)
    # Created engagements: {"id", "type": "emails"|"notes", "properties", "links": {kind: id}}
    engagements: list[dict[str, Any]] = field(default_factory=list)
    search_page: int = 2  # deals per search page, small so that paging is exercised

    def add_deal(self, deal_id: str, contact_ids: list[str], **properties: Any) -> None:
        self.deals[deal_id] = {
            "id": deal_id,
            "properties": {"hs_object_id": deal_id, **properties},
            "associations": {
                "contacts": {"results": [{"id": c, "type": "deal_to_contact"} for c in contact_ids]}
            },
        }

    def authorized(self, call: Call) -> Answer | None:
        if call.authorization == f"Bearer {TOKEN}":
            return None
        return 401, {}, {"status": "error", "category": "INVALID_AUTHENTICATION"}

    def route(self, call: Call) -> Answer:
        parts = call.path.strip("/").split("/")
        if call.method == "GET" and parts[:4] == ["crm", "v3", "objects", "deals"]:
            deal = self.deals.get(parts[4])
            return _ok(deal) if deal else _ok({"message": "not found"}, 404)
        if call.method == "GET" and parts[:4] == ["crm", "v3", "objects", "contacts"]:
            contact = self.contacts.get(parts[4])
            if contact is None:
                return _ok({"message": "resource not found"}, 404)
            wanted = call.query["properties"][0].split(",")
            return _ok({"id": parts[4], "properties": {p: contact.get(p) for p in wanted}})
        if call.method == "POST" and call.path == "/crm/v3/objects/contacts/batch/read":
            wanted = [i["id"] for i in call.body["inputs"]]
            results = [
                {
                    "id": i,
                    "properties": {p: self.contacts[i].get(p) for p in call.body["properties"]},
                }
                for i in reversed(wanted)  # HubSpot does not keep the order
                if i in self.contacts
            ]
            return _ok({"status": "COMPLETE", "results": results})
        if call.method == "GET" and parts[:3] == ["crm", "v3", "owners"]:
            owner = self.owners.get(parts[3])
            return _ok(owner) if owner else _ok({"message": "no owner"}, 404)
        if call.method == "GET" and call.path == "/crm/v3/pipelines/deals":
            return _ok({"results": self.pipelines})
        if call.method == "POST" and call.path == "/crm/v3/objects/deals/search":
            return self._search_deals(call.body)
        if call.method == "POST" and parts[:3] == ["crm", "v3", "objects"] and len(parts) == 5:
            return self._search_engagements(parts[3], call.body)
        if call.method == "POST" and parts[:3] == ["crm", "v3", "objects"] and len(parts) == 4:
            return self._create(parts[3], call.body)
        return _ok({"message": f"no route {call.method} {call.path}"}, 404)

    def _create(self, kind: str, body: dict[str, Any]) -> Answer:
        if kind not in ("emails", "notes") or "hs_timestamp" not in body["properties"]:
            return _ok({"status": "error", "message": "Property values were not valid"}, 400)
        links = {}
        for association in body.get("associations") or []:
            [kind_of] = association["types"]
            assert kind_of["associationCategory"] == "HUBSPOT_DEFINED"
            links[ASSOCIATION_TYPES[(kind, kind_of["associationTypeId"])]] = association["to"]["id"]
        created = {"id": str(len(self.engagements) + 5001), "type": kind,
                   "properties": body["properties"], "links": links}  # fmt: skip
        self.engagements.append(created)
        return _ok({"id": created["id"], "properties": body["properties"]}, 201)

    def _search_engagements(self, kind: str, body: dict[str, Any]) -> Answer:
        [group] = body["filterGroups"]
        wanted = {f["propertyName"]: f["value"] for f in group["filters"]}
        found = [
            {"id": e["id"]}
            for e in self.engagements
            if e["type"] == kind
            and e["properties"]["hs_timestamp"] == wanted["hs_timestamp"]
            and e["links"].get("contact") == wanted["associations.contact"]
        ]
        return _ok({"total": len(found), "results": found[: body.get("limit", 10)]})

    def _search_deals(self, body: dict[str, Any]) -> Answer:
        [group] = body["filterGroups"]
        filters = {f["propertyName"]: f for f in group["filters"]}
        stages = set(filters["dealstage"]["values"])
        since = int(filters["hs_lastmodifieddate"]["value"])
        matching = sorted(
            (
                d
                for d in self.deals.values()
                if d["properties"].get("dealstage") in stages
                and _ms(d["properties"]["hs_lastmodifieddate"]) >= since
            ),
            key=lambda d: _ms(d["properties"]["hs_lastmodifieddate"]),
        )
        start = int(body.get("after") or 0)
        page = matching[start : start + min(body.get("limit", 10), self.search_page)]
        answer: dict[str, Any] = {
            "total": len(matching),
            "results": [
                {
                    "id": d["id"],
                    "properties": {p: d["properties"].get(p) for p in body["properties"]},
                }
                for d in page
            ],
        }
        if start + len(page) < len(matching):
            answer["paging"] = {"next": {"after": str(start + len(page))}}
        return _ok(answer)


@contextmanager
def hubspot_api() -> Iterator[tuple[str, HubSpotState]]:
    state = HubSpotState()
    with serve(state) as url:
        yield url, state


RATE_LIMITED: Answer = (
    429,
    {"Retry-After": "1"},
    {
        "status": "error",
        "message": "You have reached your ten_secondly_rolling limit.",
        "errorType": "RATE_LIMIT",
        "policyName": "TEN_SECONDLY_ROLLING",
    },
)
UNAVAILABLE: Answer = (503, {}, {"status": "error", "message": "Service Unavailable"})
