"""A real SMTP server for tests (aiosmtpd on a free port) whose replies a test scripts."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

from tests.conftest import free_port


@dataclass
class Script:
    rcpt_replies: list[str] = field(default_factory=list)
    data_replies: list[str] = field(default_factory=list)
    drop_after_data: bool = False
    close_after_message: bool = False
    delivered: list[str] = field(default_factory=list)  # Message-IDs, in order
    over_tls: list[bool] = field(default_factory=list)
    raw: list[bytes] = field(default_factory=list)
    envelopes: list[tuple[str, list[str], list[str]]] = field(
        default_factory=list
    )  # from, to, options
    connections: int = 0


class _Handler:
    def __init__(self, script: Script) -> None:
        self.script = script

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if self.script.rcpt_replies:
            return self.script.rcpt_replies.pop(0)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        reply = self.script.data_replies.pop(0) if self.script.data_replies else "250 OK queued"
        if reply.startswith("250") or self.script.drop_after_data:
            self.script.delivered.append(str(message_from_bytes(envelope.content)["Message-ID"]))
            self.script.raw.append(envelope.content)
            self.script.envelopes.append(
                (envelope.mail_from, list(envelope.rcpt_tos), list(envelope.mail_options))
            )
            self.script.over_tls.append(server.transport.get_extra_info("ssl_object") is not None)
        if self.script.drop_after_data:
            server.transport.close()  # the reply never reaches the client
        elif self.script.close_after_message:
            server.loop.call_later(0.05, server.transport.close)
        return reply


class _CountingSMTP(SMTP):
    script: Script

    def connection_made(self, transport: Any) -> None:
        self.script.connections += 1
        super().connection_made(transport)


class _Controller(Controller):
    def __init__(
        self,
        script: Script,
        auth: tuple[str, str] | None,
        starttls: ssl.SSLContext | None = None,
        smtputf8: bool = False,
        **kwargs: Any,
    ) -> None:
        self._script, self._auth, self._starttls = script, auth, starttls
        self._smtputf8 = smtputf8
        super().__init__(_Handler(script), **kwargs)

    def factory(self) -> SMTP:
        def authenticator(
            server: Any, session: Any, envelope: Any, mechanism: str, data: Any
        ) -> AuthResult:
            ok = isinstance(data, LoginPassword) and self._auth == (
                data.login.decode(),
                data.password.decode(),
            )
            # handled=False lets aiosmtpd send the 535 itself.
            return AuthResult(success=True) if ok else AuthResult(success=False, handled=False)

        extra: dict[str, Any] = {"enable_SMTPUTF8": self._smtputf8}
        if self._auth:
            # PLAIN only: smtplib falls back from PLAIN to LOGIN after a 535, and
            # aiosmtpd's LOGIN exchange then stalls, which would hide the 535 we test.
            extra |= {
                "authenticator": authenticator,
                "auth_required": True,
                "auth_require_tls": False,
                "auth_exclude_mechanism": ["LOGIN"],
            }
        if self._starttls is not None:
            extra |= {"tls_context": self._starttls, "require_starttls": True}
        server = _CountingSMTP(self.handler, **extra)
        server.script = self._script
        return server


def server_tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


@contextmanager
def smtp_server(
    auth: tuple[str, str] | None = None,
    starttls: ssl.SSLContext | None = None,
    implicit_tls: ssl.SSLContext | None = None,
    smtputf8: bool = False,
) -> Iterator[tuple[Script, int]]:
    """`smtputf8` makes the server offer SMTPUTF8 (RFC 6531), as many relays do not."""
    script = Script()
    port = free_port()
    controller = _Controller(
        script,
        auth,
        starttls,
        smtputf8,
        hostname="127.0.0.1",
        port=port,
        ssl_context=implicit_tls,
        server_hostname="localhost",
    )
    controller.start()
    script.connections = 0  # start() opens one connection of its own to check readiness
    try:
        yield script, port
    finally:
        controller.stop()


@contextmanager
def refusing_server(greeting: bytes = b"421 4.3.2 Service not available\r\n") -> Iterator[int]:
    """Answers every connection with `greeting` and hangs up (a busy or broken relay)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.sendall(greeting)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stop.set()
        thread.join(2)
        listener.close()
