"""The words of a CRM entry for what happened to a letter, the same in every native CRM.

HubSpot and Pipedrive render notes as HTML (`note_html`: everything from the letter or
from outside, a subject, an error, a URL, is escaped). Bitrix24 timeline comments and
amoCRM notes are plain text (`note_text`). The CRMs of Russian-speaking businesses get
their entries in Russian (`language="ru"`).

An activity of a letter planned under an experiment names the experiment and the arm on a
line of its own (`experiment_line`), the same words on every kind, so that what the CRM
shows and finds can be told apart by arm without any custom field being set up first.
"""

from __future__ import annotations

import html
from typing import Any

from worker.planning.rules_model import HOLDOUT

_WHAT = {
    "en": {
        "email.sent": "Thankly sent “{subject}” to {email}.",
        "email.opened": "The customer opened “{subject}”.",
        "email.clicked": "The customer clicked a link in “{subject}”.",
        "contact.unsubscribed": "The customer unsubscribed from “{subject}”.",
        "email.failed": "Thankly could not send “{subject}”.",
        "email.held_out": (
            "Thankly held back “{subject}” from {email}: the customer is in the holdout"
            " of experiment {experiment}, so no letter was sent."
        ),
    },
    "ru": {
        "email.sent": "Thankly отправил письмо «{subject}» на {email}.",
        "email.opened": "Клиент открыл письмо «{subject}».",
        "email.clicked": "Клиент перешёл по ссылке из письма «{subject}».",
        "contact.unsubscribed": "Клиент отписался от писем («{subject}»).",
        "email.failed": "Thankly не смог отправить письмо «{subject}».",
        "email.held_out": (
            "Thankly не отправлял письмо «{subject}» на {email}: клиент в контрольной"
            " группе эксперимента {experiment}."
        ),
    },
}
_EXTRA = {
    "en": {
        "reason": "Reason: {}",
        "link": "Link: {}",
        "stop": "Thankly sends this address no more letters.",
        "variant": "Experiment {experiment}, variant {arm}.",
        "holdout": "Experiment {experiment}: holdout (no letter sent).",
        # A kind this module has no words for yet: said plainly rather than failing.
        "other": "Thankly: {kind} for “{subject}”.",
    },
    "ru": {
        "reason": "Причина: {}",
        "link": "Ссылка: {}",
        "stop": "Thankly больше не пишет на этот адрес.",
        "variant": "Эксперимент {experiment}, вариант {arm}.",
        "holdout": "Эксперимент {experiment}: контрольная группа (письмо не отправлялось).",
        "other": "Thankly: {kind} для письма «{subject}».",
    },
}


def _named(data: dict[str, Any], field: str) -> str:
    """The letter's experiment or arm, from the envelope or else the details (a held_out
    activity carries both); "" when there is none, never "None"."""
    value = data.get(field) or (data.get("details") or {}).get(field)
    return value if isinstance(value, str) else ""


def experiment_line(data: dict[str, Any], language: str = "en") -> str | None:
    """ "Experiment deal-thanks-q1, variant b." (or "…: holdout (no letter sent).") for an
    activity of a letter planned under an experiment; None for any other letter."""
    experiment, arm = _named(data, "experiment"), _named(data, "arm")
    if not experiment or not arm:
        return None
    extra = _EXTRA.get(language, _EXTRA["en"])
    return extra["holdout" if arm == HOLDOUT else "variant"].format(experiment=experiment, arm=arm)


def note_lines(kind: str, data: dict[str, Any], language: str = "en") -> list[str]:
    """Plain lines (nothing escaped) saying what happened, in `language` (en or ru)."""
    words, extra = _WHAT.get(language, _WHAT["en"]), _EXTRA.get(language, _EXTRA["en"])
    details = data.get("details") or {}
    subject = str(data.get("subject") or details.get("subject") or data.get("letter") or "")
    email = str((data.get("contact") or {}).get("email") or "")
    experiment = _named(data, "experiment") or "?"
    template = words.get(kind, extra["other"])
    lines = [template.format(subject=subject, email=email, experiment=experiment, kind=kind)]
    if kind == "email.failed":
        lines.append(extra["reason"].format(details.get("error") or "?"))
    if kind == "email.clicked" and details.get("url"):
        lines.append(extra["link"].format(details["url"]))
    if kind == "contact.unsubscribed":
        lines.append(extra["stop"])
    line = experiment_line(data, language)
    if line is not None:
        lines.append(line)
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
