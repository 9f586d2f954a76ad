"""The periodic loop of `thankly scheduler` (and of `thankly run`).

Each tick asks the database what is due and enqueues it; the broker never holds a timer.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import timedelta

from worker.healthcheck import HEARTBEAT_FILE
from worker.queue import INGEST_INBOX, send_quietly
from worker.runtime import Runtime
from worker.sweeper import claim_stale_inbox

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TickReport:
    inbox_requeued: int


def tick(runtime: Runtime) -> TickReport:
    grace = timedelta(seconds=runtime.settings.sweep_grace_seconds)
    ids = claim_stale_inbox(runtime.session_factory, runtime.clock.now(), grace)
    for inbox_id in ids:
        send_quietly(runtime.dispatcher, INGEST_INBOX, inbox_id)
    if ids:
        log.info("re-enqueued %d inbox rows that were never ingested", len(ids))
    return TickReport(inbox_requeued=len(ids))


def run_forever(runtime: Runtime, stop: threading.Event) -> None:
    interval = runtime.settings.sweep_interval_seconds
    heartbeat = runtime.settings.var_dir / HEARTBEAT_FILE
    heartbeat.parent.mkdir(parents=True, exist_ok=True)
    while True:
        try:
            tick(runtime)
            heartbeat.touch()  # read by the container health check
        except Exception:
            # The database may be down for a while; keep ticking rather than exit.
            log.exception("scheduler tick failed; trying again in %.0f s", interval)
        if stop.wait(interval):
            return
