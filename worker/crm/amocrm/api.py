"""amoCRM's (Kommo's) API v4, as much as Thankly uses, with every path in one place.

Requests carry a long-lived token (`Authorization: Bearer …`, made in the account's
integration settings). An account allows 7 requests a second; over it, `429`. A list with
nothing in it is `204 No Content`, not an empty page. Pages follow `_links.next`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx

from worker.crm.json_api import JsonApi, json_field
from worker.crm.rate_budget import RateBudget
from worker.retry import CallError
from worker.settings import Settings

PATHS = {
    "lead": "/api/v4/leads/{lead_id}",
    "leads": "/api/v4/leads",
    "contact": "/api/v4/contacts/{contact_id}",
    "user": "/api/v4/users/{user_id}",
    "account": "/api/v4/account",
    "notes_add": "/api/v4/leads/notes",
    "lead_notes": "/api/v4/leads/{lead_id}/notes",
}
WON, LOST = 142, 143  # system statuses, the same in every pipeline
PAGE = 250


def api_base(settings: Settings) -> str:
    if settings.amocrm_api_base:
        return settings.amocrm_api_base
    return f"https://{settings.amocrm_subdomain}.amocrm.ru"


def from_settings(settings: Settings) -> AmoCrmApi:
    token = settings.amocrm_token
    if token is None:
        raise CallError("THANKLY_AMOCRM_TOKEN is not set", permanent=False, retry_after=300)
    budget = RateBudget("amocrm", settings.amocrm_requests_per_second, 1.0, settings.broker_url)
    return AmoCrmApi(api_base(settings), token.get_secret_value(), budget)


class AmoCrmApi(JsonApi):
    label = "amoCRM"
    refused_setting = "the long-lived token (THANKLY_AMOCRM_TOKEN)"

    def __init__(self, base_url: str, token: str, budget: RateBudget) -> None:
        super().__init__(base_url, {"Authorization": f"Bearer {token}"}, budget)

    def lead(self, lead_id: str) -> dict[str, Any]:
        return self._call("GET", PATHS["lead"].format(lead_id=lead_id), params={"with": "contacts"})

    def contact(self, contact_id: str) -> dict[str, Any]:
        return self._call("GET", PATHS["contact"].format(contact_id=contact_id))

    def user(self, user_id: str) -> dict[str, Any] | None:
        try:
            return self._call("GET", PATHS["user"].format(user_id=user_id))
        except CallError as exc:
            if exc.permanent:
                return None
            raise

    def account(self) -> dict[str, Any]:
        return self._call("GET", PATHS["account"])

    def leads_updated_since(self, since: datetime) -> list[dict[str, Any]]:
        """Leads updated since `since`, every page."""
        leads: list[dict[str, Any]] = []
        page = 1
        while True:
            params = {"filter[updated_at][from]": int(since.timestamp()), "page": page,
                      "limit": PAGE, "order[updated_at]": "asc"}  # fmt: skip
            answer = self._call("GET", PATHS["leads"], params=params)
            leads.extend((answer.get("_embedded") or {}).get("leads") or [])
            if not ((answer.get("_links") or {}).get("next")):
                return leads
            page += 1

    def add_note(self, lead_id: int, text: str) -> None:
        body = [{"entity_id": lead_id, "note_type": "common", "params": {"text": text}}]
        self._call("POST", PATHS["notes_add"], json=body)

    def notes(self, lead_id: int) -> list[dict[str, Any]]:
        path = PATHS["lead_notes"].format(lead_id=lead_id)
        params = {"filter[note_type]": "common", "limit": PAGE, "order[id]": "desc"}
        return list(
            (self._call("GET", path, params=params).get("_embedded") or {}).get("notes") or []
        )

    def _reason(self, response: httpx.Response) -> str:
        return json_field(response, "detail") or json_field(response, "title") or "refused"
