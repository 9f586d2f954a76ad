"""The common part of the CRM API imitations: a threaded HTTP server on 127.0.0.1 that
keeps every request (so a test can assert each one), answers scripted failures first, and
hands the rest to the CRM's own routes."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

# (status, headers, JSON body)
Answer = tuple[int, dict[str, str], Any]


@dataclass
class Call:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any

    @property
    def authorization(self) -> str | None:
        return self.headers.get("authorization")


@dataclass
class Imitation:
    """Subclasses say who may call (`authorized`) and what each route answers (`route`)."""

    failures: list[Answer] = field(default_factory=list)  # answered first, one per request
    # Requests carried out whose answer is then "lost" (a 502 from a proxy, say): the case
    # where a client cannot know whether its write happened.
    lost_answers: int = 0
    calls: list[Call] = field(default_factory=list)

    def authorized(self, call: Call) -> Answer | None:
        """None when the call may go on, else the refusal."""
        return None

    def route(self, call: Call) -> Answer:
        raise NotImplementedError


def _handler(state: Imitation) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _handle(self, method: str) -> None:
            url = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            call = Call(
                method, url.path, parse_qs(url.query), headers, json.loads(raw) if raw else {}
            )
            state.calls.append(call)
            answer = state.authorized(call)
            if answer is None and state.failures:
                answer = state.failures.pop(0)
            status, extra, body = answer or state.route(call)
            if answer is None and state.lost_answers and method == "POST":
                state.lost_answers -= 1
                status, extra, body = 502, {}, {"message": "Bad Gateway"}
            if status == 204:  # No Content: no body at all
                self.send_response(204)
                self.end_headers()
                return
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in extra.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._handle("GET")

        def do_POST(self) -> None:
            self._handle("POST")

    return Handler


@contextmanager
def serve(state: Imitation) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    # shutdown() waits for the loop's next poll: 0.5 s by default, at every test's end.
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
