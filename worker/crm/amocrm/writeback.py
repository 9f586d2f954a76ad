"""What amoCRM learns from Thankly: a note on the lead for each activity (sent, opened,
clicked, unsubscribed, failed, and an experiment's held-out letter), in the account's
language. A note of an experiment's letter names the experiment and the arm on a line of
its own. (Not a tag on the lead: that would change the lead.)

A note (`POST /api/v4/leads/notes`, type `common`) changes no field of the lead, so it
fires no status webhook back. amoCRM has no idempotency key; each note ends with its
activity's marker (`thankly:sent:42`), and a retry whose first answer was lost looks
through the lead's notes for it before writing.
"""

from __future__ import annotations

import logging
from typing import Any

from worker.crm.amocrm.api import AmoCrmApi
from worker.crm.notes import note_text
from worker.retry import CallError

log = logging.getLogger(__name__)


class AmoCrmCrm:
    name = "amocrm"

    def __init__(self, api: AmoCrmApi, language: str = "ru") -> None:
        self.api, self.language = api, language

    def deliver(self, key: str, payload: dict[str, Any], *, retry: bool = False) -> None:
        data = payload["data"]
        lead = str((data.get("deal") or {}).get("id") or "")
        if not lead.isdigit():
            raise CallError("an amoCRM note needs the lead's id", permanent=True)
        tag = f"thankly:{key}"
        if retry and any(
            tag in str((n.get("params") or {}).get("text") or "") for n in self.api.notes(int(lead))
        ):
            log.info("amoCRM lead %s has activity %s already", lead, key)
            return
        self.api.add_note(int(lead), note_text(payload["type"], data, tag, self.language))
