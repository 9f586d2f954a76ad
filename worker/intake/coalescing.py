"""A thread of its own that handles, in one call, whatever was handed to it meanwhile.

The intake's writer (group commit) and its publisher both work this way: callers on any
thread `put` items and go on; the thread takes every item that arrived while it handled
the last batch (no timer: under load batches grow by themselves, alone an item is handled
at once).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Coalescing(Generic[T]):
    def __init__(
        self,
        name: str,
        handle: Callable[[list[T]], None],
        max_batch: int,
        on_exit: Callable[[], None] = lambda: None,
    ) -> None:
        self._name, self._handle, self._max = name, handle, max_batch
        self._on_exit = on_exit  # run by the thread as it stops (e.g. to close a connection)
        self._queue: queue.SimpleQueue[T | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def put(self, item: T) -> None:
        with self._lock:
            if self._thread is None:
                # Started on first use, not with the app: `thankly api` builds an app
                # before it forks, and a thread does not survive a fork.
                self._queue = queue.SimpleQueue()
                self._thread = threading.Thread(
                    target=self._run, args=(self._queue,), name=self._name, daemon=True
                )
                self._thread.start()
            # Under the lock: nothing is put after the stop that `close` puts.
            self._queue.put(item)

    def close(self) -> None:
        """Handle what is held, then stop; a later `put` starts the thread again."""
        with self._lock:
            thread, self._thread = self._thread, None
            if thread is not None:
                self._queue.put(None)
        if thread is not None:
            thread.join()

    def _run(self, items: queue.SimpleQueue[T | None]) -> None:
        try:
            stopping = False
            while not stopping:
                item = items.get()
                if item is None:
                    break
                batch = [item]
                while len(batch) < self._max:
                    try:
                        more = items.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        stopping = True
                        break
                    batch.append(more)
                self._handle(batch)
        finally:
            self._on_exit()
