"""An imitation of Pipedrive's REST API on 127.0.0.1: the paths Thankly calls (v2 deals,
persons and activities, v1 users and notes), the `x-api-token` header, Pipedrive's
`{"success", "data", "additional_data"}` envelope with cursor pagination, and scripted
failures (429 with the rate-limit headers, 5xx). Every request is kept."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tests.crm.imitation import Answer, Call, Imitation, serve

TOKEN = "pd-test-token-0123456789abcdef"


def _ok(data: Any, status: int = 200, **additional: Any) -> Answer:
    body: dict[str, Any] = {"success": True, "data": data}
    if additional:
        body["additional_data"] = additional
    return status, {}, body


def _missing(what: str) -> Answer:
    return 404, {}, {"success": False, "error": f"{what} not found", "errorCode": 404}


@dataclass
class PipedriveState(Imitation):
    deals: dict[str, dict[str, Any]] = field(default_factory=dict)
    persons: dict[str, dict[str, Any]] = field(default_factory=dict)
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    activities: list[dict[str, Any]] = field(default_factory=list)
    notes: list[dict[str, Any]] = field(default_factory=list)
    page: int = 2  # deals per list page, small so that paging is exercised

    def authorized(self, call: Call) -> Answer | None:
        if call.headers.get("x-api-token") == TOKEN and "api_token" not in call.query:
            return None
        return 401, {}, {"success": False, "error": "unauthorized access", "errorCode": 401}

    def route(self, call: Call) -> Answer:
        parts = call.path.strip("/").split("/")
        get = call.method == "GET"
        if get and parts[:3] == ["api", "v2", "deals"] and len(parts) == 4:
            deal = self.deals.get(parts[3])
            return _ok(deal) if deal else _missing("Deal")
        if get and call.path == "/api/v2/deals":
            return self._won_deals(call.query)
        if get and parts[:3] == ["api", "v2", "persons"]:
            person = self.persons.get(parts[3])
            return _ok(person) if person else _missing("Person")
        if get and call.path == "/api/v1/users/me":
            return _ok({"id": 1, "name": "Admin", "email": "admin@seller.example",
                        "company_name": "Seller GmbH", "company_domain": "seller"})  # fmt: skip
        if get and parts[:3] == ["api", "v1", "users"]:
            user = self.users.get(parts[3])
            return _ok(user) if user else _missing("User")
        if call.path == "/api/v2/activities":
            if get:
                of = call.query["deal_id"][0]
                found = [a for a in reversed(self.activities) if str(a["deal_id"]) == of]
                return _ok(found[: int(call.query["limit"][0])])
            return self._add(self.activities, call.body, ("subject", "type"))
        if call.path == "/api/v1/notes":
            if get:
                of = call.query["deal_id"][0]
                return _ok([n for n in reversed(self.notes) if str(n.get("deal_id")) == of])
            return self._add(self.notes, call.body, ("content",))
        return 404, {}, {"success": False, "error": f"no route {call.method} {call.path}"}

    def _add(
        self, into: list[dict[str, Any]], body: dict[str, Any], needs: tuple[str, ...]
    ) -> Answer:
        if any(not body.get(k) for k in needs):
            return 400, {}, {"success": False, "error": f"{needs} required", "errorCode": 400}
        created = {"id": len(into) + 1, **body}
        into.append(created)
        return _ok(created, 201)

    def _won_deals(self, query: dict[str, list[str]]) -> Answer:
        since = datetime.fromisoformat(query["updated_since"][0].replace("Z", "+00:00"))
        matching = [
            d
            for d in sorted(self.deals.values(), key=lambda d: d["update_time"])
            if d["status"] == query["status"][0]
            and datetime.fromisoformat(d["update_time"].replace("Z", "+00:00")) >= since
        ]
        start = int((query.get("cursor") or ["0"])[0])
        limit = min(int(query["limit"][0]), self.page)
        page = matching[start : start + limit]
        cursor = str(start + limit) if start + limit < len(matching) else None
        return _ok(page, next_cursor=cursor)


@contextmanager
def pipedrive_api() -> Iterator[tuple[str, PipedriveState]]:
    state = PipedriveState()
    with serve(state) as url:
        yield url, state


RATE_LIMITED: Answer = (
    429,
    {"x-ratelimit-limit": "20", "x-ratelimit-remaining": "0", "x-ratelimit-reset": "2"},
    {"success": False, "error": "Request over limit", "errorCode": 429},
)
UNAVAILABLE: Answer = (503, {}, {"success": False, "error": "Service unavailable"})
