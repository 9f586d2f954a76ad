"""Pipedrive's REST API, as much of it as Thankly uses, with every path in one place.

Requests carry the API token in the `x-api-token` header (never in the URL, where proxies
log it). Pipedrive limits each token per rolling 2-second window (the burst limit, by plan)
and per day; a 429 names its wait in Retry-After or `x-ratelimit-reset`. Errors become
`CallError`s the one retry policy understands, as for HubSpot.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import httpx

from worker.crm.adapters import retry_after_seconds
from worker.crm.rate_budget import RateBudget
from worker.retry import CallError
from worker.settings import Settings

log = logging.getLogger(__name__)

PATHS = {
    "deal": "/api/v2/deals/{deal_id}",
    "deals": "/api/v2/deals",
    "person": "/api/v2/persons/{person_id}",
    "user": "/api/v1/users/{user_id}",
    "me": "/api/v1/users/me",
    "activities": "/api/v2/activities",
    "notes": "/api/v1/notes",
}
TOKEN_REJECTED_WAIT = 300.0
PAGE = 100


def from_settings(settings: Settings) -> PipedriveApi:
    token = settings.pipedrive_token
    if token is None:
        raise CallError("THANKLY_PIPEDRIVE_TOKEN is not set", permanent=False, retry_after=300)
    budget = RateBudget("pipedrive", settings.pipedrive_requests_per_2s, 2.0, settings.broker_url)
    return PipedriveApi(settings.pipedrive_api_base, token.get_secret_value(), budget)


class PipedriveApi:
    def __init__(
        self, base_url: str, token: str, budget: RateBudget, timeout: float = 10.0
    ) -> None:
        self._client = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={"x-api-token": token, "Accept": "application/json"},
            timeout=timeout,
        )
        self._budget = budget

    def deal(self, deal_id: str) -> dict[str, Any]:
        return self._data("GET", PATHS["deal"].format(deal_id=deal_id))

    def person(self, person_id: str) -> dict[str, Any]:
        return self._data("GET", PATHS["person"].format(person_id=person_id))

    def user(self, user_id: str) -> dict[str, Any] | None:
        try:
            return self._data("GET", PATHS["user"].format(user_id=user_id))
        except CallError as exc:
            if exc.permanent:  # a deactivated user: the letter is signed by the brand
                return None
            raise

    def me(self) -> dict[str, Any]:
        return self._data("GET", PATHS["me"])

    def won_deals(self, since: datetime) -> list[dict[str, Any]]:
        """Won deals updated since `since`, every page (cursor pagination)."""
        deals: list[dict[str, Any]] = []
        cursor: str | None = None
        stamp = since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        while True:
            params: dict[str, Any] = {"status": "won", "updated_since": stamp, "limit": PAGE}
            if cursor:
                params["cursor"] = cursor
            answer = self._call("GET", PATHS["deals"], params=params)
            deals.extend(answer.get("data") or [])
            cursor = (answer.get("additional_data") or {}).get("next_cursor")
            if not cursor:
                return deals

    def add_activity(self, fields: dict[str, Any]) -> dict[str, Any]:
        return self._data("POST", PATHS["activities"], json=fields)

    def activities(self, deal_id: str) -> list[dict[str, Any]]:
        """The deal's activities, newest first (at most a page: enough to find a retry's)."""
        params = {
            "deal_id": deal_id,
            "limit": PAGE,
            "sort_by": "add_time",
            "sort_direction": "desc",
        }
        return list(self._call("GET", PATHS["activities"], params=params).get("data") or [])

    def add_note(self, fields: dict[str, Any]) -> dict[str, Any]:
        return self._data("POST", PATHS["notes"], json=fields)

    def notes(self, deal_id: str) -> list[dict[str, Any]]:
        params = {"deal_id": deal_id, "limit": PAGE, "sort": "add_time DESC"}
        return list(self._call("GET", PATHS["notes"], params=params).get("data") or [])

    def _data(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        data = self._call(method, path, **kwargs).get("data")
        if not isinstance(data, dict):
            raise CallError(f"Pipedrive {method} {path}: no data in the answer", permanent=True)
        return data

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        self._budget.take()
        try:
            response = self._client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise CallError(
                f"Pipedrive {method} {path}: {type(exc).__name__}", permanent=False
            ) from None
        if response.status_code < 300:
            answer: dict[str, Any] = response.json()
            return answer
        raise _error(method, path, response)


def _error(method: str, path: str, response: httpx.Response) -> CallError:
    status = response.status_code
    where = f"Pipedrive {method} {path}: {status}"
    headers = response.headers
    now = datetime.now(UTC)
    wait = retry_after_seconds(headers.get("retry-after"), now)
    if wait is None:
        wait = retry_after_seconds(headers.get("x-ratelimit-reset"), now)
    if status == 429:
        return CallError(f"{where} rate limited", permanent=False, retry_after=wait)
    if status >= 500:
        return CallError(f"{where} server error", permanent=False, retry_after=wait)
    if status in (401, 403):
        log.error("%s: the API token was refused (THANKLY_PIPEDRIVE_TOKEN)", where)
        return CallError(f"{where} token refused", permanent=False, retry_after=TOKEN_REJECTED_WAIT)
    try:
        reason = str(response.json().get("error") or "refused")
    except (ValueError, AttributeError):
        reason = "refused"
    return CallError(f"{where} {reason[:200]}", permanent=True)
