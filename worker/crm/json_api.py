"""What the native CRM API clients share: a JSON client that draws on a shared request
budget and turns every failure into a `CallError` the one retry policy understands.

A 429 and a 5xx pass (after the wait the CRM asks for); a refused token is retried slowly,
since an operator fixes it and no event may be lost meanwhile; any other 4xx is permanent.
A CRM's client says only how it names its limits and its reasons.
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

TOKEN_REJECTED_WAIT = 300.0


class JsonApi:
    label = "CRM"  # in errors: "HubSpot GET /crm/v3/…: 429 rate limited"
    refused_setting = "the API token"

    def __init__(
        self,
        base_url: str,
        headers: dict[str, str],
        budget: RateBudget,
        timeout: float = 10.0,
    ) -> None:
        self._client = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={"Accept": "application/json", **headers},
            timeout=timeout,
        )
        self._budget = budget

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        self._budget.take()
        try:
            response = self._client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise CallError(
                f"{self.label} {method} {path}: {type(exc).__name__}", permanent=False
            ) from None
        if response.status_code < 300:
            if not response.content:  # 204 No Content: amoCRM's empty list
                return {}
            answer: dict[str, Any] = response.json()
            return answer
        raise self._error(method, path, response)

    def _error(self, method: str, path: str, response: httpx.Response) -> CallError:
        status = response.status_code
        where = f"{self.label} {method} {path}: {status}"
        wait = self._retry_after(response)
        if status == 429:
            what, wait = self._limit(response, wait)
            return CallError(f"{where} {what}", permanent=False, retry_after=wait)
        if status >= 500:
            return CallError(f"{where} server error", permanent=False, retry_after=wait)
        if status in (401, 403):
            log.error("%s: the API refused %s", where, self.refused_setting)
            return CallError(
                f"{where} token refused", permanent=False, retry_after=TOKEN_REJECTED_WAIT
            )
        return CallError(f"{where} {self._reason(response)[:200]}", permanent=True)

    def _retry_after(self, response: httpx.Response) -> float | None:
        return retry_after_seconds(response.headers.get("retry-after"), datetime.now(UTC))

    def _limit(self, response: httpx.Response, wait: float | None) -> tuple[str, float | None]:
        """A 429's description and the wait before the next try."""
        return "rate limited", wait

    def _reason(self, response: httpx.Response) -> str:
        return json_field(response, "message") or "refused"


def json_field(response: httpx.Response, name: str) -> str | None:
    try:
        value = response.json().get(name)
    except (ValueError, AttributeError):
        return None
    return str(value) if value is not None else None
