"""The words of a CRM note for what followed a letter, the same in every native CRM.

CRMs render notes as HTML, so everything that comes from the letter or from outside
(a subject, an error, a clicked URL) is escaped here.
"""

from __future__ import annotations

import html
from typing import Any

_WHAT = {
    "email.opened": "The customer opened \u201c{subject}\u201d.",
    "email.clicked": "The customer clicked a link in \u201c{subject}\u201d.",
    "contact.unsubscribed": "The customer unsubscribed from \u201c{subject}\u201d.",
    "email.failed": "Thankly could not send \u201c{subject}\u201d.",
}


def note_html(kind: str, data: dict[str, Any], tag: str = "") -> str:
    """`<p>` paragraphs for an activity of `kind` (anything but email.sent)."""
    details = data.get("details") or {}
    subject = html.escape(str(data.get("subject") or data.get("letter") or "the letter"))
    lines = ["Thankly: " + _WHAT[kind].format(subject=subject)]
    if kind == "email.failed":
        lines.append(f"Reason: {html.escape(str(details.get('error') or 'unknown'))}")
    if kind == "email.clicked" and details.get("url"):
        lines.append(f"Link: {html.escape(str(details['url']))}")
    if kind == "contact.unsubscribed":
        lines.append("Thankly sends this address no more letters.")
    body = "<p>" + "<br>".join(lines) + "</p>"
    return body + (f"<p><small>{html.escape(tag)}</small></p>" if tag else "")
