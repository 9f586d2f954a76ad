"""What Pipedrive learns from Thankly: the letter as a done activity of type `email` on the
deal and the person, and what followed (opened, clicked, unsubscribed, failed) as notes. A
holdout letter of an experiment, never sent, is a note (`email.held_out`). Every entry of
an experiment's letter names the experiment and the arm in a paragraph of its own (in
the activity's note, after the letter's text): plain text, no custom field needed.

Pipedrive has no idempotency key either. Each entry carries its activity key in a marker
(`thankly:sent:42`); a retry, whose first try's answer was lost, first looks through the
deal's recent activities or notes for that marker. Text from the letter or the CRM is
HTML-escaped: Pipedrive renders notes as HTML.
"""

from __future__ import annotations

import html
import logging
from datetime import datetime
from typing import Any

from worker.crm.notes import experiment_line, note_html
from worker.crm.pipedrive.api import PipedriveApi
from worker.retry import CallError

log = logging.getLogger(__name__)


def marker(key: str) -> str:
    return f"thankly:{key}"


def _int_id(value: Any) -> int | None:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return None


class PipedriveCrm:
    name = "pipedrive"

    def __init__(self, api: PipedriveApi) -> None:
        self.api = api

    def deliver(self, key: str, payload: dict[str, Any], *, retry: bool = False) -> None:
        data = payload["data"]
        deal_id = _int_id((data.get("deal") or {}).get("id"))
        person_id = _int_id((data.get("contact") or {}).get("id"))
        if deal_id is None and person_id is None:
            raise CallError("a Pipedrive activity needs the deal's or person's id", permanent=True)
        tag = marker(key)
        sent = payload["type"] == "email.sent"
        if retry and deal_id is not None and self._already(sent, str(deal_id), tag):
            log.info(
                "Pipedrive already has activity %s (%s)", payload["type"], data.get("letter_id")
            )
            return
        at = datetime.fromisoformat(payload["timestamp"].replace("Z", "+00:00"))
        if sent:
            self.api.add_activity(_activity(data, at, deal_id, person_id, tag))
        else:
            fields: dict[str, Any] = {"content": note_html(payload["type"], data, tag)}
            if deal_id is not None:
                fields["deal_id"] = deal_id
            if person_id is not None:
                fields["person_id"] = person_id
            self.api.add_note(fields)

    def _already(self, sent: bool, deal_id: str, tag: str) -> bool:
        entries = self.api.activities(deal_id) if sent else self.api.notes(deal_id)
        field = "note" if sent else "content"
        return any(tag in str(entry.get(field) or "") for entry in entries)


def _activity(
    data: dict[str, Any], at: datetime, deal_id: int | None, person_id: int | None, tag: str
) -> dict[str, Any]:
    details = data.get("details") or {}
    subject = str(details.get("subject") or data.get("subject") or data.get("letter") or "")
    text = html.escape(str(details.get("text") or ""))
    line = experiment_line(data)
    named = f"<p>{html.escape(line)}</p>" if line is not None else ""
    fields: dict[str, Any] = {
        "subject": subject[:250],
        "type": "email",
        "done": True,
        "due_date": at.strftime("%Y-%m-%d"),
        "due_time": at.strftime("%H:%M"),
        "note": f"<p>{text}</p>".replace("\n", "<br>") + named + f"<p><small>{tag}</small></p>",
    }
    if deal_id is not None:
        fields["deal_id"] = deal_id
    if person_id is not None:
        fields["participants"] = [{"person_id": person_id, "primary": True}]
    return fields
