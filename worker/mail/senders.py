"""Where letters go: SMTP in production, `.eml` files without SMTP, memory in tests.

A failed send raises SendError whose `kind` decides what happens to the letter:
- transient: nothing was accepted, trying again later is safe;
- permanent: the server refused the message (5xx), trying again will not help;
- unknown: the connection was lost after the message content was sent, so the server
  may have accepted it; never resent automatically (an admin decides).
"""

from __future__ import annotations

import os
import smtplib
import ssl
import tempfile
import threading
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from pathlib import Path
from typing import Literal, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

Kind = Literal["transient", "permanent", "unknown"]


class SendError(Exception):
    def __init__(self, kind: Kind, error_class: str, text: str, code: int | None = None) -> None:
        super().__init__(f"{error_class}: {code or ''} {text}".strip())
        self.kind = kind
        self.error_class = error_class
        self.text = text
        self.code = code


class Sender(Protocol):
    def send(self, message: EmailMessage, envelope_from: str, recipient: str) -> None: ...


@dataclass
class MemorySender:
    """Keeps messages in a list (tests, previews)."""

    sent: list[EmailMessage] = field(default_factory=list)

    def send(self, message: EmailMessage, envelope_from: str, recipient: str) -> None:
        self.sent.append(message)


class EmlSender:
    """Writes each message to `<outbox>/<message-id>.eml`, atomically: a reader never sees
    half a file, and a retry of the same letter overwrites rather than duplicates."""

    def __init__(self, outbox: Path) -> None:
        self.outbox = outbox

    def send(self, message: EmailMessage, envelope_from: str, recipient: str) -> None:
        name = "".join(c for c in str(message["Message-ID"]) if c.isalnum() or c in "@.-_")
        data = message.as_bytes(policy=SMTP_POLICY)
        tmp = ""
        try:
            self.outbox.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.outbox, prefix=".tmp-", suffix=".eml")
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.outbox / f"{name}.eml")
        except OSError as exc:
            if tmp:
                Path(tmp).unlink(missing_ok=True)
            raise SendError("transient", "outbox", str(exc)) from None


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    username: str | None
    password: str | None
    implicit_tls: bool
    starttls: bool
    timeout: float = 30.0

    @classmethod
    def from_url(cls, url: str, timeout: float = 30.0) -> SmtpConfig:
        """`smtp://user:pass@host:587?starttls=true` or `smtps://user:pass@host:465`."""
        parts = urlsplit(url)
        if parts.scheme not in {"smtp", "smtps"} or not parts.hostname:
            raise ValueError("must be smtp://host[:port] or smtps://host[:port]")
        query = {k: v[-1].lower() for k, v in parse_qs(parts.query).items()}
        implicit = parts.scheme == "smtps"
        return cls(
            host=parts.hostname,
            port=parts.port or (465 if implicit else 25),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            implicit_tls=implicit,
            starttls=not implicit and query.get("starttls") in {"true", "1", "yes"},
            timeout=float(query.get("timeout", timeout)),
        )


def _dot_stuff(data: bytes) -> bytes:
    """RFC 5321 4.5.2 transparency, and the terminating <CRLF>.<CRLF>."""
    if data.startswith(b"."):
        data = b"." + data
    data = data.replace(b"\r\n.", b"\r\n..")
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data + b".\r\n"


def _reply_kind(code: int) -> Kind:
    return "transient" if 400 <= code < 500 else "permanent"


class SmtpSender:
    """One connection per process, reused between letters and reopened when it dropped
    before a message began. Each phase of the transaction is driven by hand so that a
    failure is classified by how far the message got."""

    def __init__(self, config: SmtpConfig) -> None:
        self.config = config
        self._conn: smtplib.SMTP | None = None
        self._lock = threading.Lock()  # one transaction at a time on the shared connection

    def close(self) -> None:
        with self._lock:
            self._drop()

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.quit()
            except (smtplib.SMTPException, OSError):
                self._conn.close()
            self._conn = None

    def _connect(self) -> smtplib.SMTP:
        cfg = self.config
        try:
            if cfg.implicit_tls:
                conn: smtplib.SMTP = smtplib.SMTP_SSL(
                    cfg.host, cfg.port, timeout=cfg.timeout, context=ssl.create_default_context()
                )
            else:
                conn = smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout)
        except smtplib.SMTPConnectError as exc:
            raise SendError("transient", "connect", _text(exc.smtp_error), exc.smtp_code) from None
        except (OSError, smtplib.SMTPException) as exc:
            raise SendError("transient", "connect", str(exc)) from None
        try:
            conn.ehlo()
            if cfg.starttls:
                conn.starttls(context=ssl.create_default_context())
                conn.ehlo()
        except smtplib.SMTPResponseException as exc:
            conn.close()
            raise SendError("transient", "ehlo", _text(exc.smtp_error), exc.smtp_code) from None
        except (OSError, smtplib.SMTPException) as exc:
            conn.close()
            raise SendError("transient", "ehlo", str(exc)) from None
        if cfg.username:
            try:
                conn.login(cfg.username, cfg.password or "")
            except smtplib.SMTPResponseException as exc:
                conn.close()
                # A rejected login is our configuration, not the recipient: retry later.
                raise SendError("transient", "auth", _text(exc.smtp_error), exc.smtp_code) from None
            except (OSError, smtplib.SMTPException) as exc:
                conn.close()
                raise SendError("transient", "auth", str(exc)) from None
        return conn

    def send(self, message: EmailMessage, envelope_from: str, recipient: str) -> None:
        data = _dot_stuff(message.as_bytes(policy=SMTP_POLICY))
        with self._lock:
            reused = self._conn is not None
            try:
                self._transaction(data, envelope_from, recipient)
            except _DroppedBeforeMessage:
                self._drop()
                if not reused:
                    raise SendError("transient", "connect", "connection closed by server") from None
                # The idle connection had gone away; nothing of this message was sent.
                try:
                    self._transaction(data, envelope_from, recipient)
                except _DroppedBeforeMessage:
                    self._drop()
                    raise SendError("transient", "connect", "connection closed by server") from None

    def _transaction(self, data: bytes, envelope_from: str, recipient: str) -> None:
        if self._conn is None:
            self._conn = self._connect()
        conn = self._conn
        try:
            code, reply = conn.mail(envelope_from)
            if code != 250:
                self._reset()
                raise SendError(_reply_kind(code), "mail", _text(reply), code)
            code, reply = conn.rcpt(recipient)
            if code not in (250, 251):
                self._reset()
                raise SendError(_reply_kind(code), "rcpt", _text(reply), code)
            conn.putcmd("data")
            code, reply = conn.getreply()
            if code != 354:
                self._reset()
                raise SendError(_reply_kind(code), "data", _text(reply), code)
        except (TimeoutError, smtplib.SMTPServerDisconnected, ConnectionError) as exc:
            raise _DroppedBeforeMessage from exc
        try:
            conn.send(data)
            code, reply = conn.getreply()
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            self._conn = None
            conn.close()
            raise SendError(
                "unknown", "after-data", f"connection lost after the message was sent: {exc}"
            ) from None
        if code != 250:
            raise SendError(_reply_kind(code), "data-end", _text(reply), code)

    def _reset(self) -> None:
        try:
            if self._conn is not None:
                self._conn.rset()
        except (smtplib.SMTPException, OSError):
            self._conn = None


class _DroppedBeforeMessage(Exception):
    """The connection failed before DATA was accepted: safe to reconnect and retry."""


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)


def make_sender(smtp_url: str | None, outbox: Path) -> Sender:
    if smtp_url:
        return SmtpSender(SmtpConfig.from_url(smtp_url))
    return EmlSender(outbox)
