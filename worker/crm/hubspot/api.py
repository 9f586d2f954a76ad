"""HubSpot's CRM API, as much of it as Thankly uses, with every path in one place.

HubSpot is moving to date-versioned paths (`/crm/objects/2025-09/…`): when it does, only
PATHS changes. Errors become `CallError`s the one retry policy understands: 429 (either
rate-limit policy) and 5xx are worth another try after the wait HubSpot asks for; 404 is
permanent; a rejected token is retried slowly (an operator fixes it, and no event is lost
meanwhile).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import httpx

from worker.crm.adapters import retry_after_seconds
from worker.crm.rate_budget import RateBudget
from worker.retry import CallError

log = logging.getLogger(__name__)

PATHS = {
    "deal": "/crm/v3/objects/deals/{deal_id}",
    "contacts_batch_read": "/crm/v3/objects/contacts/batch/read",
    "owner": "/crm/v3/owners/{owner_id}",
}
DEAL_PROPERTIES = ["dealname", "amount", "deal_currency_code", "hubspot_owner_id", "dealstage"]
CONTACT_PROPERTIES = ["email", "firstname", "lastname", "hs_language", "hs_timezone"]
# The daily limit resets at midnight in the account's zone: ask again in an hour.
DAILY_LIMIT_WAIT = 3600.0
TOKEN_REJECTED_WAIT = 300.0


class HubSpotApi:
    def __init__(
        self, base_url: str, token: str, budget: RateBudget, timeout: float = 10.0
    ) -> None:
        self._client = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            timeout=timeout,
        )
        self._budget = budget

    def deal(self, deal_id: str) -> dict[str, Any]:
        return self._call(
            "GET",
            PATHS["deal"].format(deal_id=deal_id),
            params={"properties": ",".join(DEAL_PROPERTIES), "associations": "contacts"},
        )

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

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        self._budget.take()
        try:
            response = self._client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise CallError(
                f"HubSpot {method} {path}: {type(exc).__name__}", permanent=False
            ) from None
        if response.status_code < 300:
            answer: dict[str, Any] = response.json()
            return answer
        raise _error(method, path, response)


def _error(method: str, path: str, response: httpx.Response) -> CallError:
    status = response.status_code
    where = f"HubSpot {method} {path}: {status}"
    wait = retry_after_seconds(response.headers.get("retry-after"), datetime.now(UTC))
    if status == 429:
        policy = _field(response, "policyName") or "unknown policy"
        if policy == "DAILY":
            wait = max(wait or 0.0, DAILY_LIMIT_WAIT)
        return CallError(f"{where} rate limited ({policy})", permanent=False, retry_after=wait)
    if status >= 500:
        return CallError(f"{where} server error", permanent=False, retry_after=wait)
    if status in (401, 403):
        log.error("%s: the private-app token was refused (THANKLY_HUBSPOT_TOKEN)", where)
        return CallError(f"{where} token refused", permanent=False, retry_after=TOKEN_REJECTED_WAIT)
    return CallError(f"{where} {_field(response, 'message') or 'refused'}", permanent=True)


def _field(response: httpx.Response, name: str) -> str | None:
    try:
        value = response.json().get(name)
    except (ValueError, AttributeError):
        return None
    return str(value) if value is not None else None
