"""One letter as an RFC 5322 message: multipart/alternative, stable Message-ID."""

from __future__ import annotations

import secrets
from datetime import datetime
from email.headerregistry import Address, BaseHeader, HeaderRegistry
from email.message import EmailMessage
from email.policy import default as default_policy
from email.utils import format_datetime, parseaddr

from worker.letters.render import Rendered, one_line
from worker.letters.unsubscribe_texts import text_footer

# Put between "=" and "?": no RFC 2047 decoder, ours or a reader's, sees an encoded word,
# and the reader still sees the characters the CRM sent (the mark is invisible).
ENCODED_WORD_BREAK = "\u200b"


class _HeaderClasses(HeaderRegistry):
    """The standard registry, with each header's class made once. The stock one builds a
    new class (`type(...)`) every time a header is set or parsed: a tenth of the time it
    takes to build and write a letter. The classes themselves are the same."""

    def __init__(self) -> None:
        super().__init__()
        self._made: dict[str, type[BaseHeader]] = {}

    def __getitem__(self, name: str) -> type[BaseHeader]:
        key = name.lower()
        made = self._made.get(key)
        if made is None:
            made = self._made[key] = super().__getitem__(name)
        return made


# The standard library's default policy in every respect but the header classes' cache;
# the senders write with clones of it (CRLF, and UTF-8 where a local part needs it).
POLICY = default_policy.clone(header_factory=_HeaderClasses())


class UnsafeAddress(ValueError):
    """An address whose local part a header decoder could turn into other text."""


def header_text(value: str) -> str:
    """A value for a header: one line, and no encoded word. The email library decodes
    `=?utf-8?b?DQo=?=` in a value it is given back into CR/LF (and an unpatched Python,
    CVE-2024-6923, writes them out raw), so CRM text must never hold one when set."""
    return one_line(value).replace("=?", f"={ENCODED_WORD_BREAK}?")


def _address(display: str | None, email: str) -> Address:
    username, _, domain = email.rpartition("@")
    # Intake refuses these; events stored before it did must still not reach a header.
    if "=?" in username or not username.isprintable():
        raise UnsafeAddress("an address's local part holds '=?' or a control character")
    return Address(display_name=header_text(display or ""), username=username, domain=domain)


def _with_unsubscribe(text: str, locale: str | None, url: str | None) -> str:
    """The plain-text part ends with the List-Unsubscribe link, after the signature, in the
    letter's language: added here once for every letter rather than in each body.txt (a
    template that already shows the link is left alone)."""
    if not url or url in text:
        return text
    return f"{text.rstrip()}\n\n{text_footer(locale, url)}\n"


def build_message(
    *,
    rendered: Rendered,
    mail_from: str,
    to: str,
    message_id: str,
    date: datetime,
    sender_name: str | None = None,
    reply_to: str | None = None,
    reply_name: str | None = None,
    unsubscribe_url: str | None = None,
) -> EmailMessage:
    """Every header value passes through `header_text`: CRM data cannot add a header.
    Raises UnsafeAddress for an address no header can carry safely."""
    default_name, from_email = parseaddr(mail_from)
    msg = EmailMessage(policy=POLICY)
    # The owner's name on our address: the letter is personal, the domain stays ours (SPF/DKIM).
    msg["From"] = _address(sender_name or default_name, from_email)
    msg["To"] = _address(None, to)
    # Replies reach a person: the owner, else the brand's reply address (else the From).
    if reply_to and reply_to != from_email:
        msg["Reply-To"] = _address(reply_name, reply_to)
    msg["Subject"] = header_text(rendered.subject)
    msg["Date"] = format_datetime(date)
    msg["Message-ID"] = message_id
    if unsubscribe_url:
        msg["List-Unsubscribe"] = f"<{unsubscribe_url}>"
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"  # RFC 8058
    msg.set_content(_with_unsubscribe(rendered.text, rendered.locale, unsubscribe_url))
    msg.add_alternative(rendered.html, subtype="html")
    # Our own boundary, so the generator need not invent one and compile a pattern to
    # check it against the parts (another tenth). 128 random bits chosen after the content
    # cannot occur in it; "=_" cannot occur in a quoted-printable or base64 part at all.
    msg.set_boundary(f"=_{secrets.token_hex(16)}")
    return msg
