"""Every query of the scheduler tick reads through an index on SQLite, statistics or not.

Without statistics SQLite takes the (status, …) indexes. Once ANALYZE (or PRAGMA
optimize) has run, it knows that `status` has few distinct values but not which one is
rare (the status is a bound parameter), and it used to read whole tables for the sweeps:
the tick then cost what the backlog costs (docs/BENCHMARKS.md, "empty tick").
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, insert, text

from tests.conftest import make_settings
from worker.clock import FixedClock
from worker.models import CrmActivity, Event, InboxItem, Letter
from worker.queue import RecordingDispatcher
from worker.runtime import Runtime, build_runtime
from worker.scheduling.tick import TickReport, tick

NOW = datetime(2026, 12, 1, tzinfo=UTC)
LONG_AGO = NOW - timedelta(days=2)
NEXT_YEAR = NOW + timedelta(days=365)
# Enough rows of the common statuses for ANALYZE to make a table scan look cheaper than
# the index (the plans these tests guard against appear from a few hundred rows).
BACKLOG = 2_000
FEW = 3  # rows of each rare state a busy tick claims


def _seed(runtime: Runtime, busy: bool) -> None:
    """A backlog of letters due next year, processed inbox rows and delivered activities;
    when `busy`, also a few of everything the tick acts on: stale inbox rows, due,
    stuck `queued` and stale `sending` letters, due and expired activities."""
    ids = range(1, BACKLOG + 1)
    with runtime.session_factory.begin() as session:
        session.execute(
            insert(InboxItem),
            [
                {
                    "id": i,
                    "source": "generic",
                    "event_id": f"e{i}",
                    "received_at": LONG_AGO,
                    "body": "{}",
                    "body_sha256": "",
                    "status": "pending" if busy and i <= FEW else "processed",
                    "enqueued_at": LONG_AGO,
                    "enqueue_count": 1,
                }
                for i in ids
            ],
        )
        session.execute(
            insert(Event),
            [
                {
                    "id": 1,
                    "inbox_id": 1,
                    "source": "generic",
                    "external_id": "e1",
                    "type": "deal.closed",
                    "occurred_at": LONG_AGO,
                    "payload": {},
                    "created_at": LONG_AGO,
                }
            ],
        )
        states = ["queued"] * FEW + ["sending"] * FEW + ["scheduled"] * FEW if busy else []
        session.execute(
            insert(Letter),
            [
                {
                    "id": i,
                    "event_id": 1,
                    "rule": f"r{i}",
                    "letter": "deal_closed",
                    "locale": "en",
                    "contact_email": f"c{i}@example.org",
                    "status": states[i - 1] if i <= len(states) else "scheduled",
                    "due_at": LONG_AGO if i <= len(states) else NEXT_YEAR,
                    "message_id": f"<{i}@t>",
                    "attempt_count": 0,
                    "enqueue_count": 1,
                    "created_at": LONG_AGO,
                    "updated_at": LONG_AGO,
                }
                for i in ids
            ],
        )
        activities = ["pending"] * FEW + ["delivering"] * FEW if busy else []
        session.execute(
            insert(CrmActivity),
            [
                {
                    "id": i,
                    "kind": "letter.sent",
                    "idempotency_key": f"k{i}",
                    "payload": {},
                    "status": activities[i - 1] if i <= len(activities) else "delivered",
                    "attempts": 1,
                    "next_attempt_at": LONG_AGO,
                    "created_at": LONG_AGO,
                    "updated_at": LONG_AGO,
                }
                for i in ids
            ],
        )
        session.execute(text("ANALYZE"))
    runtime.engine.dispose()  # new connections plan with the new statistics


def _tick_statements(runtime: Runtime) -> tuple[TickReport, list[tuple[str, Any]]]:
    sent: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
        sent.append((statement, params))

    event.listen(runtime.engine, "before_cursor_execute", record)
    try:
        report = tick(runtime)
    finally:
        event.remove(runtime.engine, "before_cursor_execute", record)
    return report, sent


def _plan(runtime: Runtime, statement: str, params: Any) -> list[str]:
    raw = runtime.engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute(f"EXPLAIN QUERY PLAN {statement}", params)
        return [row[3] for row in cursor.fetchall()]
    finally:
        raw.close()


@pytest.mark.parametrize("busy", [False, True], ids=["nothing due", "some of everything"])
def test_every_tick_query_reads_an_index_after_analyze_on_sqlite(
    tmp_path: Path, sqlite_url: str, busy: bool
) -> None:
    runtime = build_runtime(
        make_settings(tmp_path, sqlite_url), clock=FixedClock(NOW), dispatcher=RecordingDispatcher()
    )
    try:
        _seed(runtime, busy)
        report, statements = _tick_statements(runtime)
        expected = TickReport(FEW, FEW, FEW, FEW, 2 * FEW) if busy else TickReport(inbox_requeued=0)
        assert report == expected
        # Nothing due: the five sweeps' SELECTs. Busy: each one's UPDATE by id as well.
        assert len(statements) >= 5
        scans = {}
        for statement, params in statements:
            plan = _plan(runtime, statement, params)
            # SCAN reads a whole table (or a whole index): the cost of the backlog.
            if not any(step.startswith("SEARCH ") for step in plan) or any(
                step.startswith("SCAN ") for step in plan
            ):
                scans[" ".join(statement.split())[:120]] = plan
        assert scans == {}
    finally:
        runtime.engine.dispose()
