"""What a Bitrix24 portal learns from Thankly: a timeline comment on the deal and on the
contact for each activity (sent, opened, clicked, unsubscribed, failed, and an
experiment's held-out letter), in the portal's language. A comment of an experiment's
letter names the experiment and the arm on a line of its own.

Never an update of the deal itself: that would fire ONCRMDEALUPDATE, which comes back to
Thankly as a webhook. Bitrix24 has no idempotency key; each comment ends with its
activity's marker (`thankly:sent:42`), and a retry whose first answer was lost looks
through the record's comments for it before writing.
"""

from __future__ import annotations

import logging
from typing import Any

from worker.crm.bitrix24.api import METHODS, Bitrix24Api
from worker.crm.notes import note_text
from worker.retry import CallError

log = logging.getLogger(__name__)


class Bitrix24Crm:
    name = "bitrix24"

    def __init__(self, api: Bitrix24Api, language: str = "ru") -> None:
        self.api, self.language = api, language

    def deliver(self, key: str, payload: dict[str, Any], *, retry: bool = False) -> None:
        data = payload["data"]
        targets = [
            ("deal", (data.get("deal") or {}).get("id")),
            ("contact", (data.get("contact") or {}).get("id")),
        ]
        records = [(kind, str(i)) for kind, i in targets if i and str(i).isdigit()]
        if not records:
            raise CallError("a Bitrix24 comment needs the deal's or contact's id", permanent=True)
        tag = f"thankly:{key}"
        text = note_text(payload["type"], data, tag, self.language)
        for entity_type, entity_id in records:
            if retry and self._has(entity_type, entity_id, tag):
                log.info("Bitrix24 %s %s has activity %s already", entity_type, entity_id, key)
                continue
            fields = {"ENTITY_ID": int(entity_id), "ENTITY_TYPE": entity_type, "COMMENT": text}
            self.api.result(METHODS["comment_add"], {"fields": fields})

    def _has(self, entity_type: str, entity_id: str, tag: str) -> bool:
        comments = self.api.result(
            METHODS["comments"],
            {
                "filter": {"ENTITY_ID": int(entity_id), "ENTITY_TYPE": entity_type},
                "select": ["ID", "COMMENT"],
                "order": {"ID": "DESC"},
            },
        )
        return any(tag in str(c.get("COMMENT") or "") for c in comments or [])
