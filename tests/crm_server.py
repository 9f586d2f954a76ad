"""A stand-in CRM: checks signature, idempotency key and body; fails when told to."""

from __future__ import annotations

import json
import random
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook

CRM_SECRET = "whsec_Q1JNLXRlc3Qtc2VjcmV0LTEyMzQ1Njc4OTA="


@dataclass
class Crm:
    # Replies to give before accepting, e.g. [(500, {}), (429, {"Retry-After": "120"})].
    script: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    accepted: dict[str, dict[str, Any]] = field(default_factory=dict)  # by Idempotency-Key
    posts: Counter[str] = field(default_factory=Counter)  # every POST, by key
    rejected: list[str] = field(default_factory=list)  # why a request was malformed
    # Beyond the script: this share of valid posts gets a 500 or a 429, at random.
    fail_share: float = 0.0
    random: random.Random = field(default_factory=lambda: random.Random(7))


def _handler(crm: Crm) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _answer(self, status: int, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            key = self.headers.get("Idempotency-Key", "")
            crm.posts[key] += 1
            try:
                document = Webhook(CRM_SECRET).verify(body, dict(self.headers.items()))
            except Exception as exc:
                crm.rejected.append(f"signature: {exc}")
                return self._answer(401)
            if not key or key != self.headers.get("webhook-id"):
                crm.rejected.append("Idempotency-Key missing or not the webhook-id")
                return self._answer(400)
            if (
                self.headers.get("Content-Type") != "application/json"
                or not {"type", "timestamp", "data"} <= set(document)
                or "message_id" not in document["data"]
            ):
                crm.rejected.append(f"body: {document}")
                return self._answer(422)
            if crm.script:
                status, headers = crm.script.pop(0)
                return self._answer(status, headers)
            roll = crm.random.random()
            if roll < crm.fail_share:
                busy = roll < crm.fail_share / 2
                return self._answer(429, {"Retry-After": "1"}) if busy else self._answer(500)
            crm.accepted.setdefault(key, document)  # a repeat of a key is no new entry
            return self._answer(200)

    return Handler


@contextmanager
def crm_server() -> Iterator[tuple[Crm, str]]:
    crm = Crm()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(crm))
    # shutdown() waits for the loop's next poll: 0.5 s by default, at every test's end.
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
    )
    thread.start()
    try:
        yield crm, f"http://127.0.0.1:{server.server_address[1]}/activities"
    finally:
        server.shutdown()
        server.server_close()


def decoded(crm: Crm) -> list[str]:
    return sorted(json.dumps(v["type"]) for v in crm.accepted.values())
