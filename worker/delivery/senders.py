"""Where letters go: SMTP in production (smtp.py), `.eml` files without SMTP, memory in tests.

A failed send raises SendError whose `kind` decides what happens to the letter:
- transient: nothing was accepted, trying again later is safe;
- permanent: the server refused the message (5xx), trying again will not help;
- unknown: the connection was lost after the message content was sent, so the server
  may have accepted it; never resent automatically (an admin decides).
A sender raises nothing else once the first byte of the message may have reached the
server: any other exception means the message was not sent.

International addresses: a domain outside ASCII goes out in its IDNA form (`xn--…`) in
the envelope and the headers alike; a local part outside ASCII needs SMTPUTF8 (RFC 6531)
and a message written in UTF-8 (RFC 6532), so without that extension the letter fails.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from email.headerregistry import Address
from email.message import EmailMessage
from pathlib import Path
from typing import Literal, Protocol

import idna

from worker.delivery.wire_check import refuse_unsafe
from worker.letters.message import POLICY
from worker.retry import CallError

# The stock SMTP and SMTPUTF8 policies, made from the letters' policy (its header cache).
SMTP_POLICY = POLICY.clone(linesep="\r\n")
SMTPUTF8_POLICY = SMTP_POLICY.clone(utf8=True)

Kind = Literal["transient", "permanent", "unknown"]


class SendError(CallError):
    """Only a transient failure is worth another try: a permanent one will repeat, and
    after an unknown one the server may have the letter already."""

    def __init__(self, kind: Kind, error_class: str, text: str, code: int | None = None) -> None:
        code_text = f"{code} " if code else ""
        super().__init__(f"{error_class}: {code_text}{text}".strip(), permanent=kind != "transient")
        self.kind = kind
        self.error_class = error_class
        self.text = text
        self.code = code


class Sender(Protocol):
    def send(self, message: EmailMessage, envelope_from: str, recipient: str) -> None: ...


ADDRESS_HEADERS = ("From", "Sender", "To", "Cc", "Reply-To")


@dataclass(frozen=True)
class Wire:
    """A message as it goes out: its bytes and an envelope with ASCII domains."""

    data: bytes
    envelope_from: str
    recipient: str
    smtputf8: bool  # some address keeps a local part outside ASCII


def _idna(domain: str, phase: str) -> str:
    if domain.isascii():
        return domain  # left exactly as given
    try:
        return idna.encode(domain, uts46=True).decode("ascii")
    except idna.IDNAError as exc:
        raise SendError("permanent", phase, f"the domain has no ASCII (IDNA) form: {exc}") from None


def _ascii_domain(address: str, phase: str) -> str:
    local, _, domain = address.rpartition("@")
    return f"{local}@{_idna(domain, phase)}"


def _ascii_domains(message: EmailMessage) -> None:
    for name in ADDRESS_HEADERS:
        header = message[name]
        if header is None or all(a.domain.isascii() for a in header.addresses):
            continue
        rewritten = [
            Address(a.display_name, a.username, _idna(a.domain, "mail")) for a in header.addresses
        ]
        message.replace_header(name, rewritten)


def wire(message: EmailMessage, envelope_from: str, recipient: str) -> Wire:
    """Rewrites the message's address headers in place to ASCII domains, and serialises it:
    as 7-bit headers, or in UTF-8 when a local part is not ASCII (an encoded word there
    would make the address invalid). Raises only SendError (permanent: the same message
    would fail the same way again)."""
    sender = _ascii_domain(envelope_from, "mail")
    rcpt = _ascii_domain(recipient, "rcpt")
    try:
        _ascii_domains(message)
        local_parts = [
            a.username for n in ADDRESS_HEADERS for a in getattr(message[n], "addresses", ())
        ]
        utf8 = not all(part.isascii() for part in (sender, rcpt, *local_parts))
        data = message.as_bytes(policy=SMTPUTF8_POLICY if utf8 else SMTP_POLICY)
    except SendError:
        raise
    except Exception as exc:  # the email library refusing a value: data, not a fault
        raise SendError(
            "permanent", "mail", f"cannot write the message: {type(exc).__name__}: {exc}"
        ) from None
    return Wire(data, sender, rcpt, utf8)


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
        data = wire(message, envelope_from, recipient).data
        refuse_unsafe(data, message.keys(), dot_stuffed=False)
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


def make_sender(smtp_url: str | None, outbox: Path) -> Sender:
    if smtp_url:
        # Imported here: the SMTP sender builds on this module's errors and wire form.
        from worker.delivery.smtp import SmtpConfig, SmtpSender

        return SmtpSender(SmtpConfig.from_url(smtp_url))
    return EmlSender(outbox)
