"""The words of a CRM entry for what happened to a letter, the same in every native CRM.

HubSpot and Pipedrive render notes as HTML (`note_html`: everything from the letter or
from outside, a subject, an error, a URL, is escaped). Bitrix24 timeline comments and
amoCRM notes are plain text (`note_text`). The CRMs of Russian-speaking businesses get
their entries in Russian (`language="ru"`).
"""

from __future__ import annotations

import html
from typing import Any

_WHAT = {
    "en": {
        "email.sent": "Thankly sent “{subject}” to {email}.",
        "email.opened": "The customer opened “{subject}”.",
        "email.clicked": "The customer clicked a link in “{subject}”.",
        "contact.unsubscribed": "The customer unsubscribed from “{subject}”.",
        "email.failed": "Thankly could not send “{subject}”.",
    },
    "ru": {
        "email.sent": "Thankly отправил письмо «{subject}» на {email}.",
        "email.opened": "Клиент открыл письмо «{subject}».",
        "email.clicked": "Клиент перешёл по ссылке из письма «{subject}».",
        "contact.unsubscribed": "Клиент отписался от писем («{subject}»).",
        "email.failed": "Thankly не смог отправить письмо «{subject}».",
    },
}
_EXTRA = {
    "en": {
        "reason": "Reason: {}",
        "link": "Link: {}",
        "stop": "Thankly sends this address no more letters.",
    },
    "ru": {
        "reason": "Причина: {}",
        "link": "Ссылка: {}",
        "stop": "Thankly больше не пишет на этот адрес.",
    },
}


def note_lines(kind: str, data: dict[str, Any], language: str = "en") -> list[str]:
    """Plain lines (nothing escaped) saying what happened, in `language` (en or ru)."""
    words, extra = _WHAT.get(language, _WHAT["en"]), _EXTRA.get(language, _EXTRA["en"])
    details = data.get("details") or {}
    subject = str(data.get("subject") or details.get("subject") or data.get("letter") or "")
    email = str((data.get("contact") or {}).get("email") or "")
    lines = [words[kind].format(subject=subject, email=email)]
    if kind == "email.failed":
        lines.append(extra["reason"].format(details.get("error") or "?"))
    if kind == "email.clicked" and details.get("url"):
        lines.append(extra["link"].format(details["url"]))
    if kind == "contact.unsubscribed":
        lines.append(extra["stop"])
    return lines


def note_text(kind: str, data: dict[str, Any], tag: str, language: str = "en") -> str:
    """A plain-text entry, ending with the marker a retry looks for."""
    return "\n".join([*note_lines(kind, data, language), tag])


def note_html(kind: str, data: dict[str, Any], tag: str = "") -> str:
    """`<p>` paragraphs for an activity of `kind` (anything but email.sent)."""
    lines = [html.escape(line) for line in note_lines(kind, data)]
    lines[0] = "Thankly: " + lines[0] if not lines[0].startswith("Thankly") else lines[0]
    body = "<p>" + "<br>".join(lines) + "</p>"
    return body + (f"<p><small>{html.escape(tag)}</small></p>" if tag else "")
