"""Pipedrive's REST API, as much of it as Thankly uses, with every path in one place.

Requests carry the API token in the `x-api-token` header (never in the URL, where proxies
log it). Pipedrive limits each token per rolling 2-second window (the burst limit, by plan)
and per day; a 429 names its wait in Retry-After or `x-ratelimit-reset`. Errors become
`CallError`s the one retry policy understands, as for HubSpot.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx

from worker.crm.adapters import retry_after_seconds
from worker.crm.json_api import JsonApi, json_field
from worker.crm.rate_budget import RateBudget
from worker.retry import CallError
from worker.settings import Settings

PATHS = {
    "deal": "/api/v2/deals/{deal_id}",
    "deals": "/api/v2/deals",
    "person": "/api/v2/persons/{person_id}",
    "user": "/api/v1/users/{user_id}",
    "me": "/api/v1/users/me",
    "activities": "/api/v2/activities",
    "notes": "/api/v1/notes",
}
PAGE = 100


def from_settings(settings: Settings) -> PipedriveApi:
    token = settings.pipedrive_token
    if token is None:
        raise CallError("THANKLY_PIPEDRIVE_TOKEN is not set", permanent=False, retry_after=300)
    budget = RateBudget("pipedrive", settings.pipedrive_requests_per_2s, 2.0, settings.broker_url)
    return PipedriveApi(settings.pipedrive_api_base, token.get_secret_value(), budget)


class PipedriveApi(JsonApi):
    label = "Pipedrive"
    refused_setting = "the API token (THANKLY_PIPEDRIVE_TOKEN)"

    def __init__(self, base_url: str, token: str, budget: RateBudget) -> None:
        super().__init__(base_url, {"x-api-token": token}, budget)

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

    def _retry_after(self, response: httpx.Response) -> float | None:
        # Pipedrive names the wait in x-ratelimit-reset (seconds) when not in Retry-After.
        now = datetime.now(UTC)
        wait = retry_after_seconds(response.headers.get("retry-after"), now)
        return (
            wait
            if wait is not None
            else retry_after_seconds(response.headers.get("x-ratelimit-reset"), now)
        )

    def _reason(self, response: httpx.Response) -> str:
        return json_field(response, "error") or "refused"
