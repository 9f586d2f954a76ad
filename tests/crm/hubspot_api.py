"""An imitation of HubSpot's CRM API on 127.0.0.1, close enough to be told apart from a
careless client: the paths Thankly calls, the Bearer token, HubSpot's response shapes
(deal with `associations.contacts.results`, batch read `results` in any order, owners),
and scripted failures (429 with Retry-After and `policyName`, 5xx). Every request is kept,
so a test can assert each one."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

TOKEN = "pat-eu1-test-token"


@dataclass
class Call:
    method: str
    path: str
    query: dict[str, list[str]]
    authorization: str | None
    body: Any


@dataclass
class HubSpotState:
    deals: dict[str, dict[str, Any]] = field(default_factory=dict)
    contacts: dict[str, dict[str, Any]] = field(default_factory=dict)
    owners: dict[str, dict[str, Any]] = field(default_factory=dict)
    # (status, headers, json body) answered, one per request, before the real answers.
    failures: list[tuple[int, dict[str, str], dict[str, Any]]] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)

    def add_deal(self, deal_id: str, contact_ids: list[str], **properties: Any) -> None:
        self.deals[deal_id] = {
            "id": deal_id,
            "properties": {"hs_object_id": deal_id, **properties},
            "associations": {
                "contacts": {"results": [{"id": c, "type": "deal_to_contact"} for c in contact_ids]}
            },
        }


def _handler(state: HubSpotState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _answer(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def _handle(self, method: str) -> None:
            url = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body: Any = json.loads(raw) if raw else {}
            auth = self.headers.get("Authorization")
            state.calls.append(Call(method, url.path, parse_qs(url.query), auth, body))
            if auth != f"Bearer {TOKEN}":
                self._answer(401, {"status": "error", "category": "INVALID_AUTHENTICATION"})
                return
            if state.failures:
                status, headers, answer = state.failures.pop(0)
                self._answer(status, answer, headers)
                return
            parts = url.path.strip("/").split("/")
            if method == "GET" and parts[:4] == ["crm", "v3", "objects", "deals"]:
                deal = state.deals.get(parts[4])
                self._answer(200, deal) if deal else self._answer(404, {"message": "not found"})
            elif method == "POST" and url.path == "/crm/v3/objects/contacts/batch/read":
                wanted = [i["id"] for i in body["inputs"]]
                results = [
                    {
                        "id": i,
                        "properties": {p: state.contacts[i].get(p) for p in body["properties"]},
                    }
                    for i in reversed(wanted)  # HubSpot does not keep the order
                    if i in state.contacts
                ]
                self._answer(200, {"status": "COMPLETE", "results": results})
            elif method == "GET" and parts[:3] == ["crm", "v3", "owners"]:
                owner = state.owners.get(parts[3])
                self._answer(200, owner) if owner else self._answer(404, {"message": "no owner"})
            else:
                self._answer(404, {"message": f"no route {method} {url.path}"})

        def do_GET(self) -> None:
            self._handle("GET")

        def do_POST(self) -> None:
            self._handle("POST")

    return Handler


@contextmanager
def hubspot_api() -> Iterator[tuple[str, HubSpotState]]:
    state = HubSpotState()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()


RATE_LIMITED: tuple[int, dict[str, str], dict[str, Any]] = (
    429,
    {"Retry-After": "1"},
    {
        "status": "error",
        "message": "You have reached your ten_secondly_rolling limit.",
        "errorType": "RATE_LIMIT",
        "policyName": "TEN_SECONDLY_ROLLING",
    },
)
UNAVAILABLE: tuple[int, dict[str, str], dict[str, Any]] = (
    503,
    {},
    {"status": "error", "message": "Service Unavailable"},
)
