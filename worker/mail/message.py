"""One letter as an RFC 5322 message: multipart/alternative, stable Message-ID."""

from __future__ import annotations

from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr

from worker.letters import Rendered, one_line
from worker.unsubscribe_texts import text_footer


def _address(display: str | None, email: str) -> Address:
    username, _, domain = email.rpartition("@")
    return Address(display_name=one_line(display or ""), username=username, domain=domain)


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
    owner_name: str | None = None,
    owner_email: str | None = None,
    unsubscribe_url: str | None = None,
) -> EmailMessage:
    """Every header value passes through `one_line`: CRM data cannot add a header."""
    default_name, from_email = parseaddr(mail_from)
    msg = EmailMessage()
    # The owner's name on our address: the letter is personal, the domain stays ours (SPF/DKIM).
    msg["From"] = _address(owner_name or default_name, from_email)
    msg["To"] = _address(None, to)
    if owner_email:
        msg["Reply-To"] = _address(owner_name, owner_email)
    msg["Subject"] = one_line(rendered.subject)
    msg["Date"] = format_datetime(date)
    msg["Message-ID"] = message_id
    if unsubscribe_url:
        msg["List-Unsubscribe"] = f"<{unsubscribe_url}>"
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"  # RFC 8058
    msg.set_content(_with_unsubscribe(rendered.text, rendered.locale, unsubscribe_url))
    msg.add_alternative(rendered.html, subtype="html")
    return msg
