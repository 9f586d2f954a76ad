"""An imitation of amoCRM's (Kommo's) API v4 on 127.0.0.1: the paths Thankly calls, the
Bearer token, HAL-shaped answers (`_embedded`, `_links.next`), `204 No Content` for an
empty list, notes posted as a JSON array, and scripted failures (429, 5xx). Every request
is kept; a test asserts each one, and that nothing ever changes a lead."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from tests.crm.imitation import Answer, Call, Imitation, serve

TOKEN = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.long-lived.test"


def _ok(body: Any, status: int = 200) -> Answer:
    return status, {}, body


def _missing() -> Answer:
    return 404, {}, {"title": "Not Found", "type": "https://httpstatus.es/404", "status": 404,
                     "detail": "Entity not found"}  # fmt: skip


@dataclass
class AmoCrmState(Imitation):
    leads: dict[str, dict[str, Any]] = field(default_factory=dict)
    contacts: dict[str, dict[str, Any]] = field(default_factory=dict)
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[dict[str, Any]] = field(default_factory=list)
    page: int = 2

    def authorized(self, call: Call) -> Answer | None:
        if call.authorization == f"Bearer {TOKEN}":
            return None
        return 401, {}, {"title": "Unauthorized", "status": 401, "detail": "Invalid token"}

    def route(self, call: Call) -> Answer:
        parts = call.path.strip("/").split("/")
        get = call.method == "GET"
        if get and parts[:3] == ["api", "v4", "leads"] and len(parts) == 4:
            lead = self.leads.get(parts[3])
            if lead is None:
                return _missing()
            answer = {k: v for k, v in lead.items() if k != "contacts"}
            if call.query.get("with") == ["contacts"]:
                answer["_embedded"] = {"contacts": lead.get("contacts", [])}
            return _ok(answer)
        if get and call.path == "/api/v4/leads":
            return self._leads(call.query)
        if get and parts[:3] == ["api", "v4", "contacts"]:
            contact = self.contacts.get(parts[3])
            return _ok(contact) if contact else _missing()
        if get and parts[:3] == ["api", "v4", "users"]:
            user = self.users.get(parts[3])
            return _ok(user) if user else _missing()
        if get and call.path == "/api/v4/account":
            return _ok({"id": 29085955, "name": "ООО Ромашка", "subdomain": "romashka"})
        if call.method == "POST" and call.path == "/api/v4/leads/notes":
            assert isinstance(call.body, list)
            created = []
            for note in call.body:
                assert note["note_type"] == "common" and note["params"]["text"]
                self.notes.append({"id": len(self.notes) + 1, **note})
                created.append({"id": len(self.notes), "entity_id": note["entity_id"]})
            return _ok({"_embedded": {"notes": created}})
        if get and parts[:3] == ["api", "v4", "leads"] and parts[4:] == ["notes"]:
            found = [n for n in reversed(self.notes) if str(n["entity_id"]) == parts[3]]
            return _ok({"_embedded": {"notes": found}}) if found else (204, {}, None)
        return 404, {}, {"title": "Not Found", "detail": f"no route {call.method} {call.path}"}

    def _leads(self, query: dict[str, list[str]]) -> Answer:
        since = int(query["filter[updated_at][from]"][0])
        matching = sorted((x for x in self.leads.values() if x["updated_at"] >= since),
                          key=lambda x: x["updated_at"])  # fmt: skip
        page = int(query.get("page", ["1"])[0])
        chunk = matching[(page - 1) * self.page : page * self.page]
        if not chunk:
            return 204, {}, None
        leads = [{k: v for k, v in x.items() if k != "contacts"} for x in chunk]
        links: dict[str, Any] = {"self": {"href": f"/api/v4/leads?page={page}"}}
        if page * self.page < len(matching):
            links["next"] = {"href": f"/api/v4/leads?page={page + 1}"}
        return _ok({"_page": page, "_links": links, "_embedded": {"leads": leads}})


@contextmanager
def amocrm_api() -> Iterator[tuple[str, AmoCrmState]]:
    state = AmoCrmState()
    with serve(state) as url:
        yield url, state


RATE_LIMITED: Answer = (429, {}, {"title": "Too Many Requests", "status": 429})
UNAVAILABLE: Answer = (503, {}, {"title": "Service Unavailable", "status": 503})
