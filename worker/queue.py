"""Putting work on the queue. Tasks are named, so `worker` never imports `tasks`."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Protocol

log = logging.getLogger(__name__)

INGEST_INBOX = "thankly.ingest_inbox"
SEND_LETTER = "thankly.send_letter"
SEND_LETTERS = "thankly.send_letters"
DELIVER_ACTIVITY = "thankly.deliver_activity"
RECONCILE_CRM = "thankly.reconcile_crm"


class Dispatcher(Protocol):
    def send(self, task: str, *ids: int) -> None:
        """Enqueue `task(*ids)`; raise if the broker did not take it."""
        ...

    def send_many(self, task: str, groups: Sequence[Sequence[int]]) -> None:
        """Enqueue `task(*group)` for every group, in one broker round trip where the
        broker allows; raise if the broker did not take them all."""
        ...


class CeleryDispatcher:
    def __init__(self, app: Any) -> None:
        self._app = app

    def send(self, task: str, *ids: int) -> None:
        self._app.send_task(task, args=list(ids))

    def send_many(self, task: str, groups: Sequence[Sequence[int]]) -> None:
        # kombu buffers the publishes of a batch and, on Redis, writes them as one
        # pipeline when the block ends (brokers without batching publish each at once).
        with self._app.producer_or_acquire() as producer, producer.batch():
            for group in groups:
                self._app.send_task(task, args=list(group), producer=producer)


class RecordingDispatcher:
    """Keeps what would have been enqueued (tests, dry runs)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, tuple[int, ...]]] = []

    def send(self, task: str, *ids: int) -> None:
        self.sent.append((task, ids))

    def send_many(self, task: str, groups: Sequence[Sequence[int]]) -> None:
        self.sent.extend((task, tuple(group)) for group in groups)


def send_quietly(dispatcher: Dispatcher, task: str, *ids: int) -> bool:
    """Enqueue after a commit. A broker failure is logged, not raised: the row is already
    durable and the sweeper will enqueue it again."""
    try:
        dispatcher.send(task, *ids)
    except Exception as exc:  # any broker/transport error; never fail the caller
        log.warning("enqueue of %s%s failed (%s); the sweeper will retry", task, ids, exc)
        return False
    return True


def send_many_quietly(dispatcher: Dispatcher, task: str, groups: Sequence[Sequence[int]]) -> bool:
    """`send_quietly` for many tasks at once (a claimed batch): one round trip."""
    if not groups:
        return True
    try:
        dispatcher.send_many(task, groups)
    except Exception as exc:  # as above: the rows are durable, the sweeper retries
        count = sum(len(group) for group in groups)
        log.warning("enqueue of %d %s failed (%s); the sweeper will retry", count, task, exc)
        return False
    return True
