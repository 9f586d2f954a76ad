"""Putting work on the queue. Tasks are named, so `worker` never imports `tasks`."""

from __future__ import annotations

import logging
from typing import Any, Protocol

log = logging.getLogger(__name__)

INGEST_INBOX = "thankly.ingest_inbox"
SEND_LETTER = "thankly.send_letter"
DELIVER_ACTIVITY = "thankly.deliver_activity"
RECONCILE_CRM = "thankly.reconcile_crm"


class Dispatcher(Protocol):
    def send(self, task: str, *ids: int) -> None:
        """Enqueue `task(*ids)`; raise if the broker did not take it."""
        ...


class CeleryDispatcher:
    def __init__(self, app: Any) -> None:
        self._app = app

    def send(self, task: str, *ids: int) -> None:
        self._app.send_task(task, args=list(ids))


class RecordingDispatcher:
    """Keeps what would have been enqueued (tests, dry runs)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, tuple[int, ...]]] = []

    def send(self, task: str, *ids: int) -> None:
        self.sent.append((task, ids))


def send_quietly(dispatcher: Dispatcher, task: str, *ids: int) -> bool:
    """Enqueue after a commit. A broker failure is logged, not raised: the row is already
    durable and the sweeper will enqueue it again."""
    try:
        dispatcher.send(task, *ids)
    except Exception as exc:  # any broker/transport error; never fail the caller
        log.warning("enqueue of %s%s failed (%s); the sweeper will retry", task, ids, exc)
        return False
    return True
