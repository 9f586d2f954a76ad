"""Enqueueing accepted inbox rows for ingest, coalesced: one broker round trip for every
row accepted meanwhile, rather than one publish (and one thread hop) per webhook.

A row is committed before its webhook is answered, and the scheduler's sweeper enqueues
any row still pending after its grace period, so a publish lost here (a crash, a broker
outage) delays an event but never loses it. `close` publishes what is still held.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

from worker.queue import INGEST_INBOX, Dispatcher, RecordingDispatcher, send_many_quietly

MAX_BATCH = 1000  # ids in one broker call at most: a backlog after an outage goes in parts
# Ids per ingest task: building and encoding a Celery message per row was a quarter of
# the API's CPU; a task of several rows ingests them one after the other.
TASK_SIZE = 20


class Publisher:
    def __init__(self, dispatcher: Callable[[], Dispatcher]) -> None:
        # Read at each publish: a test may swap the runtime's dispatcher.
        self._dispatcher = dispatcher
        self._queue: queue.SimpleQueue[list[int] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

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
        with self._lock:
            if self._thread is None:
                # Started on first use, not with the app: `thankly api` builds an app
                # before it forks, and a thread does not survive a fork.
                self._queue = queue.SimpleQueue()
                self._thread = threading.Thread(
                    target=self._run, args=(self._queue,), name="thankly-publisher", daemon=True
                )
                self._thread.start()
            # Under the lock: nothing is put after the stop that `close` puts.
            self._queue.put(inbox_ids)

    def close(self) -> None:
        """Publish what is held, then stop; a later publish starts a new thread."""
        with self._lock:
            thread, self._thread = self._thread, None
            if thread is not None:
                self._queue.put(None)
        if thread is not None:
            thread.join()

    def _run(self, inbox: queue.SimpleQueue[list[int] | None]) -> None:
        stopping = False
        while not stopping:
            item = inbox.get()
            ids = [] if item is None else list(item)
            stopping = item is None
            # Whatever accumulated while the last publish was on the wire goes in one call.
            while len(ids) < MAX_BATCH:
                try:
                    more = inbox.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stopping = True
                    break
                else:
                    ids.extend(more)
            for start in range(0, len(ids), MAX_BATCH):
                part = ids[start : start + MAX_BATCH]
                tasks = [part[k : k + TASK_SIZE] for k in range(0, len(part), TASK_SIZE)]
                send_many_quietly(self._dispatcher(), INGEST_INBOX, tasks)
