"""What HubSpot learns from Thankly: the letter as an email engagement, and what followed
(opened, clicked, unsubscribed, failed) as notes, each on the contact and the deal. A
holdout letter of an experiment, which is never sent, is a note too (`email.held_out`),
never an email. Every entry of an experiment's letter names the experiment and the arm on
a line of its own (on the email, after the letter's text): plain text, so no custom
property has to be created first.

HubSpot has no idempotency key. A create is sent again only when the first try's answer
was lost, so a retry first looks for the engagement that try may have left (same contact,
same `hs_timestamp`, which the activity fixes once) and creates it only if it is absent.
Everything from the letter or the CRM that goes into a note is HTML-escaped: HubSpot shows
note bodies as HTML.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

from worker.crm.hubspot.api import HubSpotApi
from worker.crm.notes import experiment_line, note_html
from worker.retry import CallError

log = logging.getLogger(__name__)


def _ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


class HubSpotCrm:
    name = "hubspot"

    def __init__(self, api: HubSpotApi) -> None:
        self.api = api

    def deliver(self, key: str, payload: dict[str, Any], *, retry: bool = False) -> None:
        data = payload["data"]
        contact_id = (data.get("contact") or {}).get("id")
        if not contact_id:
            raise CallError("a HubSpot activity needs the contact's HubSpot id", permanent=True)
        links = {"contact": str(contact_id)}
        if data.get("deal"):
            links["deal"] = str(data["deal"]["id"])
        at = _ms(payload["timestamp"])
        kind = payload["type"]
        object_type = "emails" if kind == "email.sent" else "notes"
        if retry and self.api.find(object_type, at, links["contact"]):
            log.info("HubSpot already has activity %s (%s)", kind, data.get("letter_id"))
            return
        if kind == "email.sent":
            properties = self._email(data, at)
        else:
            properties = {"hs_timestamp": str(at), "hs_note_body": note_html(kind, data)}
        self.api.create(object_type, properties, links)

    def _email(self, data: dict[str, Any], at: int) -> dict[str, str]:
        details = data.get("details") or {}
        text = str(details.get("text") or "")
        line = experiment_line(data)
        if line is not None:
            text = f"{text}\n\n{line}" if text else line
        headers = {
            "to": [{"email": (data.get("contact") or {}).get("email") or ""}],
            "messageId": data.get("message_id") or "",
        }
        return {
            "hs_timestamp": str(at),
            "hs_email_direction": "EMAIL",
            "hs_email_status": "SENT",
            "hs_email_subject": str(details.get("subject") or data.get("subject") or ""),
            "hs_email_text": text,
            "hs_email_headers": json.dumps(headers, ensure_ascii=False),
        }
