"""`thankly run`: API, Celery worker and scheduler in one process, for trying Thankly out.

Production runs the three as separate processes on Redis (docker-compose.yml); here the
Celery worker consumes an in-process broker from a thread, which loses queued messages on
exit. Nothing is lost for good: the inbox is in SQLite and the sweeper re-enqueues it.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from celery.worker import WorkController, state

from worker.runtime import Runtime
from worker.scheduling import tick


@contextmanager
def celery_worker_thread(app: Any, *, timeout: float = 30.0) -> Iterator[None]:
    """Run a one-slot Celery worker in a daemon thread until the block exits."""
    ready = threading.Event()

    class _Controller(WorkController):  # type: ignore[misc]
        def on_consumer_ready(self, consumer: Any) -> None:
            ready.set()

    app.finalize()
    controller = _Controller(
        app=app,
        hostname=f"embedded-{threading.get_ident()}@{socket.gethostname()}",
        concurrency=1,
        pool="solo",
        without_heartbeat=True,
        without_mingle=True,
        without_gossip=True,
    )
    thread = threading.Thread(target=controller.start, name="celery-worker", daemon=True)
    thread.start()
    if not ready.wait(timeout):
        raise RuntimeError("the embedded Celery worker did not start")
    try:
        yield
    finally:
        # The worker loop checks this flag between messages; it is how Celery's own
        # embedded test worker is stopped from another thread.
        state.should_terminate = 0
        thread.join(timeout)
        state.should_terminate = None


@contextmanager
def scheduler_thread(runtime: Runtime) -> Iterator[None]:
    stop = threading.Event()
    thread = threading.Thread(
        target=tick.run_forever, args=(runtime, stop), name="scheduler", daemon=True
    )
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(10)
