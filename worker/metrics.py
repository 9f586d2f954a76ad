"""`GET /metrics`: what Prometheus scrapes, every name prefixed `thankly_`.

Two kinds of figures:

- *Counters and histograms* of what a process does (webhooks answered, jobs run, letters'
  transitions, send attempts, latencies, tick duration). Each process keeps its own; with
  several processes (API, workers, scheduler) set PROMETHEUS_MULTIPROC_DIR to one folder
  they all write to (a shared volume in docker compose) and `/metrics` adds them up.
- *Gauges read from the database at scrape time* (letters by status, scheduler lag, inbox
  and CRM-outbox backlog): the same whichever process answers, and multi-process safe by
  construction. Each is one indexed aggregate query.

Labels never hold addresses or free text: sources, statuses, outcomes, error classes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import datetime

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from worker.clock import Clock
from worker.models import (
    ActivityStatus,
    CrmActivity,
    InboxItem,
    InboxStatus,
    Letter,
    LetterStatus,
)

CONTENT_TYPE = CONTENT_TYPE_LATEST
_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_LAG = (0.1, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600)

WEBHOOKS = Counter(
    "thankly_webhooks",
    "Webhook requests answered, by source and outcome (accepted, duplicate, ignored, "
    "rejected) and, for rejections, the HTTP status.",
    ["source", "outcome", "status"],
)
JOBS = Counter(
    "thankly_jobs", "Jobs run, by task and outcome (ingested, sent, retry, …).", ["task", "outcome"]
)
LETTER_TRANSITIONS = Counter(
    "thankly_letter_transitions",
    "Letters entering a status (scheduled, suppressed, cancelled at planning; queued; sent, "
    "failed, unknown after sending).",
    ["to"],
)
SEND_ATTEMPTS = Counter(
    "thankly_send_attempts",
    "SMTP (or outbox) attempts by outcome and error class.",
    ["outcome", "error_class"],
)
SEND_SECONDS = Histogram(
    "thankly_send_seconds", "Duration of one send attempt, render to answer.", buckets=_SECONDS
)
INGEST_LAG_SECONDS = Histogram(
    "thankly_ingest_lag_seconds",
    "From a webhook's arrival to its event (planning included).",
    buckets=_LAG,
)
TICK_SECONDS = Histogram(
    "thankly_tick_seconds", "Duration of one scheduler tick.", buckets=_SECONDS
)


class DatabaseGauges(Collector):
    """Gauges computed at scrape time from the database."""

    def __init__(self, factory: sessionmaker[Session], clock: Clock) -> None:
        self.factory, self.clock = factory, clock

    def collect(self) -> Iterator[GaugeMetricFamily]:
        now = self.clock.now()
        with self.factory() as session:
            by_status = dict(
                session.execute(select(Letter.status, func.count()).group_by(Letter.status)).all()
            )
            oldest = session.scalar(
                select(func.min(Letter.due_at)).where(
                    Letter.status == LetterStatus.SCHEDULED, Letter.due_at <= now
                )
            )
            inbox = session.scalar(
                select(func.count())
                .select_from(InboxItem)
                .where(InboxItem.status == InboxStatus.PENDING)
            )
            source = CrmActivity.payload["data"]["source"].as_string()
            outbox = session.execute(
                select(source, func.count())
                .where(CrmActivity.status.in_((ActivityStatus.PENDING, ActivityStatus.DELIVERING)))
                .group_by(source)
            ).all()
        letters = GaugeMetricFamily("thankly_letters", "Letters by status now.", labels=["status"])
        for status in LetterStatus:
            letters.add_metric([status.value], by_status.get(status.value, 0))
        yield letters
        yield GaugeMetricFamily(
            "thankly_scheduler_lag_seconds",
            "How long the oldest due letter has waited to be claimed (0: none waits).",
            value=_seconds(now, oldest),
        )
        yield GaugeMetricFamily(
            "thankly_inbox_pending", "Webhooks stored and not yet an event.", value=inbox or 0
        )
        backlog = GaugeMetricFamily(
            "thankly_crm_outbox_backlog",
            "CRM activities not delivered yet, by the CRM they go to.",
            labels=["crm"],
        )
        for crm, count in outbox:
            backlog.add_metric([crm or "default"], count)
        yield backlog


def _seconds(now: datetime, since: datetime | None) -> float:
    return max(0.0, (now - since).total_seconds()) if since is not None else 0.0


def render(factory: sessionmaker[Session], clock: Clock) -> bytes:
    """The exposition text: this process's (or, in multi-process mode, every process's)
    counters, then the database gauges."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        counted = CollectorRegistry()
        multiprocess.MultiProcessCollector(counted)  # type: ignore[no-untyped-call]
    else:
        counted = REGISTRY
    gauges = CollectorRegistry(auto_describe=False)
    gauges.register(DatabaseGauges(factory, clock))
    return generate_latest(counted) + generate_latest(gauges)
