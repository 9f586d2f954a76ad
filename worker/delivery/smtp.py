"""The SMTP sender: one connection per worker thread, every reply classified.

A reply decides what happens to the letter (`SendError.kind`): nothing accepted yet is
transient, a 5xx is permanent, and a connection lost after the message content went out is
unknown (never resent automatically). See `senders.py` for the interface.
"""

from __future__ import annotations

import smtplib
import ssl
import threading
from dataclasses import dataclass
from email.message import EmailMessage
from urllib.parse import parse_qs, unquote, urlsplit

from worker.delivery.senders import Kind, SendError, Wire, wire
from worker.delivery.wire_check import refuse_unsafe


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
        out = wire(message, envelope_from, recipient)
        data = _dot_stuff(out.data)
        refuse_unsafe(data, message.keys(), dot_stuffed=True)
        with self._lock:
            reused = self._conn is not None
            try:
                self._transaction(data, out)
            except _DroppedBeforeMessage:
                self._drop()
                if not reused:
                    raise SendError("transient", "connect", "connection closed by server") from None
                # The idle connection had gone away; nothing of this message was sent.
                try:
                    self._transaction(data, out)
                except _DroppedBeforeMessage:
                    self._drop()
                    raise SendError("transient", "connect", "connection closed by server") from None

    def _transaction(self, data: bytes, out: Wire) -> None:
        if self._conn is None:
            self._conn = self._connect()
        conn = self._conn
        phase = "mail"
        try:
            options = self._mail_options(conn, out)
            conn.command_encoding = "ascii"  # smtplib leaves it utf-8 after an SMTPUTF8 MAIL
            code, reply = conn.mail(out.envelope_from, options)
            if code != 250:
                self._reset()
                raise SendError(_reply_kind(code), "mail", _text(reply), code)
            phase = "rcpt"
            code, reply = conn.rcpt(out.recipient)
            if code not in (250, 251):
                self._reset()
                raise SendError(_reply_kind(code), "rcpt", _text(reply), code)
            phase = "data"
            conn.putcmd("data")
            code, reply = conn.getreply()
            if code != 354:
                self._reset()
                raise SendError(_reply_kind(code), "data", _text(reply), code)
        except SendError:
            raise
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            raise _DroppedBeforeMessage from exc
        except Exception as exc:
            # Anything else (an address smtplib cannot encode, a bug) may leave the server
            # inside a transaction, where the next letter's MAIL would get `503 nested MAIL`:
            # the connection is not reused. Nothing of the message was sent.
            self._abandon()
            raise SendError("permanent", phase, f"{type(exc).__name__}: {exc}") from None
        try:
            conn.send(data)
            code, reply = conn.getreply()
        except Exception as exc:
            self._abandon()
            raise SendError(
                "unknown", "after-data", f"connection lost after the message was sent: {exc}"
            ) from None
        if code != 250:
            raise SendError(_reply_kind(code), "data-end", _text(reply), code)

    @staticmethod
    def _mail_options(conn: smtplib.SMTP, out: Wire) -> list[str]:
        if not out.smtputf8:
            return []
        if not conn.has_extn("smtputf8"):
            whose = "recipient's" if not out.recipient.isascii() else "sender's"
            raise SendError(
                "permanent",
                "rcpt" if whose == "recipient's" else "mail",
                f"the {whose} address is not ASCII before the @ and the SMTP server does not "
                "offer SMTPUTF8, which such an address needs",
            )
        return ["SMTPUTF8", "BODY=8BITMIME"] if conn.has_extn("8bitmime") else ["SMTPUTF8"]

    def _reset(self) -> None:
        try:
            if self._conn is not None:
                self._conn.rset()
        except (smtplib.SMTPException, OSError):
            self._abandon()

    def _abandon(self) -> None:
        """Closes the connection without QUIT: its state is unknown."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class _DroppedBeforeMessage(Exception):
    """The connection failed before DATA was accepted: safe to reconnect and retry."""


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
