"""HubSpot's CRM API, as much of it as Thankly uses, with every path in one place.

HubSpot is moving to date-versioned paths (`/crm/objects/2025-09/…`): when it does, only
PATHS changes. Errors become `CallError`s the one retry policy understands: 429 (either
rate-limit policy) and 5xx are worth another try after the wait HubSpot asks for; 404 is
permanent; a rejected token is retried slowly (an operator fixes it, and no event is lost
meanwhile).
"""

from __future__ import annotations

from typing import Any

import httpx

from worker.crm.json_api import JsonApi, json_field
from worker.crm.rate_budget import RateBudget
from worker.retry import CallError
from worker.settings import Settings

PATHS = {
    "deal": "/crm/v3/objects/deals/{deal_id}",
    "contact": "/crm/v3/objects/contacts/{contact_id}",
    "contacts_batch_read": "/crm/v3/objects/contacts/batch/read",
    "owner": "/crm/v3/owners/{owner_id}",
    "create": "/crm/v3/objects/{object_type}",
    "search": "/crm/v3/objects/{object_type}/search",
    "pipelines": "/crm/v3/pipelines/deals",
    "deals_search": "/crm/v3/objects/deals/search",
}
SEARCH_PAGE = 100  # HubSpot's largest search page
# HubSpot-defined association types (v4 "associationTypeId") from an engagement to a record.
ASSOCIATION_TYPES = {
    ("emails", "contact"): 198,
    ("emails", "deal"): 210,
    ("notes", "contact"): 202,
    ("notes", "deal"): 214,
}
DEAL_PROPERTIES = ["dealname", "amount", "deal_currency_code", "hubspot_owner_id", "dealstage"]
CONTACT_PROPERTIES = ["email", "firstname", "lastname", "hs_language", "hs_timezone"]
# The daily limit resets at midnight in the account's zone: ask again in an hour.
DAILY_LIMIT_WAIT = 3600.0


def from_settings(settings: Settings) -> HubSpotApi:
    """The API client every Thankly process uses, drawing on one shared request budget."""
    token = settings.hubspot_token
    if token is None:  # rows wait (a passing error) until an operator sets it
        raise CallError("THANKLY_HUBSPOT_TOKEN is not set", permanent=False, retry_after=300)
    budget = RateBudget("hubspot", settings.hubspot_requests_per_10s, 10.0, settings.broker_url)
    return HubSpotApi(settings.hubspot_api_base, token.get_secret_value(), budget)


class HubSpotApi(JsonApi):
    label = "HubSpot"
    refused_setting = "the private-app token (THANKLY_HUBSPOT_TOKEN)"

    def __init__(self, base_url: str, token: str, budget: RateBudget) -> None:
        super().__init__(base_url, {"Authorization": f"Bearer {token}"}, budget)

    def deal(self, deal_id: str) -> dict[str, Any]:
        return self._call(
            "GET",
            PATHS["deal"].format(deal_id=deal_id),
            params={"properties": ",".join(DEAL_PROPERTIES), "associations": "contacts"},
        )

    def contact(self, contact_id: str, extra: list[str]) -> dict[str, Any]:
        properties = ",".join(dict.fromkeys(CONTACT_PROPERTIES + extra))
        path = PATHS["contact"].format(contact_id=contact_id)
        return self._call("GET", path, params={"properties": properties})

    def contacts(self, ids: list[str]) -> list[dict[str, Any]]:
        """The contacts, in the order asked for (a batch read answers in any order)."""
        if not ids:
            return []
        answer = self._call(
            "POST",
            PATHS["contacts_batch_read"],
            json={"properties": CONTACT_PROPERTIES, "inputs": [{"id": i} for i in ids]},
        )
        found = {str(r.get("id")): r for r in answer.get("results") or []}
        return [found[i] for i in ids if i in found]

    def owner(self, owner_id: str) -> dict[str, Any] | None:
        try:
            return self._call("GET", PATHS["owner"].format(owner_id=owner_id))
        except CallError as exc:
            if exc.permanent:  # a deactivated owner: the letter is signed by the brand
                return None
            raise

    def create(
        self, object_type: str, properties: dict[str, Any], links: dict[str, str]
    ) -> dict[str, Any]:
        """An engagement (`emails`, `notes`) on the records in `links` ({"contact": id})."""
        associations = [
            {
                "to": {"id": record_id},
                "types": [
                    {
                        "associationCategory": "HUBSPOT_DEFINED",
                        "associationTypeId": ASSOCIATION_TYPES[(object_type, kind)],
                    }
                ],
            }
            for kind, record_id in links.items()
        ]
        return self._call(
            "POST",
            PATHS["create"].format(object_type=object_type),
            json={"properties": properties, "associations": associations},
        )

    def find(self, object_type: str, timestamp_ms: int, contact_id: str) -> str | None:
        """The id of an engagement at this exact time on this contact: what a create whose
        answer was lost (a timeout, a 502) left behind."""
        filters = [
            {"propertyName": "hs_timestamp", "operator": "EQ", "value": str(timestamp_ms)},
            {"propertyName": "associations.contact", "operator": "EQ", "value": contact_id},
        ]
        answer = self._call(
            "POST",
            PATHS["search"].format(object_type=object_type),
            json={"filterGroups": [{"filters": filters}], "limit": 1},
        )
        found = answer.get("results") or []
        return str(found[0]["id"]) if found else None

    def won_deals(self, stages: list[str], since_ms: int) -> list[dict[str, Any]]:
        """Deals now in one of `stages`, modified since `since_ms`, oldest change first,
        every page (search pages with `paging.next.after`)."""
        filters = [
            {"propertyName": "dealstage", "operator": "IN", "values": stages},
            {"propertyName": "hs_lastmodifieddate", "operator": "GTE", "value": str(since_ms)},
        ]
        query: dict[str, Any] = {
            "filterGroups": [{"filters": filters}],
            "sorts": [{"propertyName": "hs_lastmodifieddate", "direction": "ASCENDING"}],
            "properties": ["dealstage", "closedate", "hs_lastmodifieddate"],
            "limit": SEARCH_PAGE,
        }
        deals: list[dict[str, Any]] = []
        while True:
            answer = self._call("POST", PATHS["deals_search"], json=query)
            deals.extend(answer.get("results") or [])
            after = ((answer.get("paging") or {}).get("next") or {}).get("after")
            if not after:
                return deals
            query["after"] = after

    def deal_stages(self) -> dict[str, str]:
        """Every deal stage id in the account, with its pipeline's and its own label."""
        answer = self._call("GET", PATHS["pipelines"])
        return {
            str(stage["id"]): f"{pipeline.get('label')}: {stage.get('label')}"
            for pipeline in answer.get("results") or []
            for stage in pipeline.get("stages") or []
        }

    def _limit(self, response: httpx.Response, wait: float | None) -> tuple[str, float | None]:
        policy = json_field(response, "policyName") or "unknown policy"
        if policy == "DAILY":
            wait = max(wait or 0.0, DAILY_LIMIT_WAIT)
        return f"rate limited ({policy})", wait
