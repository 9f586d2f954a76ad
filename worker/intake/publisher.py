"""Enqueueing accepted inbox rows for ingest, coalesced: one broker round trip for every
row accepted meanwhile, rather than one publish (and one thread hop) per webhook.

A row is committed before its webhook is answered, and the scheduler's sweeper enqueues
any row still pending after its grace period, so a publish lost here (a crash, a broker
outage) delays an event but never loses it. `close` publishes what is still held.
"""

from __future__ import annotations

from collections.abc import Callable

from worker.intake.coalescing import Coalescing
from worker.queue import INGEST_INBOX, Dispatcher, RecordingDispatcher, send_many_quietly

MAX_BATCH = 1000  # ids in one broker call at most: a backlog after an outage goes in parts
# Ids per ingest task: building and encoding a Celery message per row was a quarter of
# the API's CPU; a task of several rows ingests them one after the other.
TASK_SIZE = 20


class Publisher:
    def __init__(self, dispatcher: Callable[[], Dispatcher]) -> None:
        # Read at each publish: a test may swap the runtime's dispatcher.
        self._dispatcher = dispatcher
        self._thread = Coalescing("thankly-publisher", self._publish, MAX_BATCH)

    def publish(self, inbox_ids: list[int]) -> None:
        """Enqueue these committed rows soon; never raises, never blocks on the broker."""
        if not inbox_ids:
            return
        dispatcher = self._dispatcher()
        if isinstance(dispatcher, RecordingDispatcher):
            # Nothing to coalesce in memory, and tests read what was sent right after
            # the answer.
            send_many_quietly(dispatcher, INGEST_INBOX, [(i,) for i in inbox_ids])
            return
        self._thread.put(inbox_ids)

    def close(self) -> None:
        """Publish what is held, then stop; a later publish starts a new thread."""
        self._thread.close()

    def _publish(self, held: list[list[int]]) -> None:
        # Whatever accumulated while the last publish was on the wire goes in one call.
        ids = [inbox_id for part in held for inbox_id in part]
        for start in range(0, len(ids), MAX_BATCH):
            part = ids[start : start + MAX_BATCH]
            tasks = [part[k : k + TASK_SIZE] for k in range(0, len(part), TASK_SIZE)]
            send_many_quietly(self._dispatcher(), INGEST_INBOX, tasks)
