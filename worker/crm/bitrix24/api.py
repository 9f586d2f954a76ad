"""A Bitrix24 portal's REST API through an incoming webhook, as much as Thankly uses.

The incoming webhook's URL (`https://<portal>/rest/<user>/<secret>/`) is the credential:
it is never logged, and errors name only the method. Each call is `POST <url><method>.json`
with a JSON body; the answer is `{"result": …}` (lists add `next` and `total`) or
`{"error", "error_description"}`. The portal's limit is a leaky bucket (2 requests a second,
a burst of 50; Enterprise 5 and 250): over it, `503 QUERY_LIMIT_EXCEEDED`; a method that
ran too long, `429 OPERATION_TIME_LIMIT`. Both pass. `batch` runs up to 50 calls in one
request, which is how a deal and its contacts are read in one go.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import httpx

from worker.crm.json_api import JsonApi, json_field
from worker.crm.rate_budget import RateBudget
from worker.retry import CallError
from worker.settings import Settings

METHODS = {
    "deal": "crm.deal.get",
    "deal_contacts": "crm.deal.contact.items.get",
    "deals": "crm.deal.list",
    "contact": "crm.contact.get",
    "user": "user.get",
    "comment_add": "crm.timeline.comment.add",
    "comments": "crm.timeline.comment.list",
    "batch": "batch",
    "profile": "profile",
}
# Waits for the portal's own limits, when it names none: the bucket drains 2 a second.
BUCKET_WAIT = 1.0
TIME_LIMIT_WAIT = 60.0


def from_settings(settings: Settings) -> Bitrix24Api:
    url = settings.bitrix24_rest_url
    if url is None:
        raise CallError("THANKLY_BITRIX24_REST_URL is not set", permanent=False, retry_after=300)
    budget = RateBudget("bitrix24", settings.bitrix24_requests_per_second, 1.0, settings.broker_url)
    return Bitrix24Api(url.get_secret_value(), budget)


class Bitrix24Api(JsonApi):
    label = "Bitrix24"
    refused_setting = "the incoming webhook (THANKLY_BITRIX24_REST_URL)"

    def __init__(self, webhook_url: str, budget: RateBudget) -> None:
        super().__init__(webhook_url.rstrip("/") + "/", {}, budget)

    def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """The whole answer of one method (`result`, and for lists `next`, `total`)."""
        return self._call("POST", f"{method}.json", json=params or {})

    def result(self, method: str, params: dict[str, Any] | None = None) -> Any:
        return self.call(method, params).get("result")

    def batch(self, commands: dict[str, tuple[str, dict[str, Any]]]) -> dict[str, Any]:
        """Up to 50 calls in one request: {name: (method, params)} → {name: result}. A
        command that failed is an error for the whole batch (`halt` = 0 runs the rest)."""
        cmd = {name: f"{method}?{urlencode(params)}" for name, (method, params) in commands.items()}
        answer = self.result(METHODS["batch"], {"halt": 0, "cmd": cmd}) or {}
        errors = answer.get("result_error") or {}
        if errors:
            name, error = next(iter(errors.items()))
            text = (
                error.get("error_description") or error.get("error")
                if isinstance(error, dict)
                else error
            )
            raise CallError(f"Bitrix24 {commands[name][0]}: {text}", permanent=True)
        results: dict[str, Any] = answer.get("result") or {}
        return results

    def deals_won_since(self, since_iso: str) -> list[dict[str, Any]]:
        """Deals in a won (S) stage changed since, every page (`start` = the last `next`)."""
        params: dict[str, Any] = {
            "filter": {"STAGE_SEMANTIC_ID": "S", ">=DATE_MODIFY": since_iso},
            "select": ["ID", "DATE_MODIFY", "CLOSEDATE", "STAGE_ID"],
            "order": {"DATE_MODIFY": "ASC"},
        }
        deals: list[dict[str, Any]] = []
        while True:
            answer = self.call(METHODS["deals"], params)
            deals.extend(answer.get("result") or [])
            if answer.get("next") is None:
                return deals
            params["start"] = answer["next"]

    def _limit(self, response: httpx.Response, wait: float | None) -> tuple[str, float | None]:
        code = json_field(response, "error") or "limit"
        if wait is None:
            wait = TIME_LIMIT_WAIT if code == "OPERATION_TIME_LIMIT" else BUCKET_WAIT
        return code, wait

    def _error(self, method: str, path: str, response: httpx.Response) -> CallError:
        # The portal answers its bucket limit with a 503; it passes like a 429.
        if json_field(response, "error") == "QUERY_LIMIT_EXCEEDED":
            what, wait = self._limit(response, self._retry_after(response))
            where = f"Bitrix24 {path}: {response.status_code} {what}"
            return CallError(where, permanent=False, retry_after=wait)
        return super()._error(method, path, response)

    def _reason(self, response: httpx.Response) -> str:
        code = json_field(response, "error") or "refused"
        return f"{code}: {json_field(response, 'error_description') or ''}".rstrip(": ")
