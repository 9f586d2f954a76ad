"""The tick: due letters are claimed once and enqueued; the database is the only clock."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, insert, text

from tests.conftest import ROOT, SAMPLES
from tests.helpers import all_letters, ingest_doc
from worker.clock import FixedClock
from worker.models import Letter, LetterStatus
from worker.queue import SEND_LETTER, RecordingDispatcher
from worker.runtime import Runtime
from worker.scheduling import tick
from worker.scheduling.claims import claim_due_letters

FEEDBACK = json.loads((SAMPLES / "feedback_logged.de.json").read_text())


def test_a_letter_is_queued_when_due_and_not_before(
    runtime: Runtime, clock: FixedClock, dispatcher: RecordingDispatcher
) -> None:
    [letter] = ingest_doc(runtime, FEEDBACK, "evt_1")
    clock.set(letter.due_at - timedelta(seconds=1))
    assert tick.tick(runtime).letters_queued == 0
    clock.set(letter.due_at)
    assert tick.tick(runtime).letters_queued == 1
    assert dispatcher.sent == [(SEND_LETTER, (letter.id,))]
    assert all_letters(runtime)[0].status == LetterStatus.QUEUED
    assert tick.tick(runtime).letters_queued == 0  # claimed once


def test_a_queued_letter_whose_task_was_lost_is_enqueued_again(
    runtime: Runtime, clock: FixedClock, dispatcher: RecordingDispatcher
) -> None:
    [letter] = ingest_doc(runtime, FEEDBACK, "evt_1")
    clock.set(letter.due_at)
    tick.tick(runtime)
    clock.set(letter.due_at + timedelta(seconds=runtime.settings.sweep_grace_seconds + 1))
    report = tick.tick(runtime)
    assert (report.letters_queued, report.letters_requeued) == (0, 1)
    assert dispatcher.sent == [(SEND_LETTER, (letter.id,)), (SEND_LETTER, (letter.id,))]


def test_cancelled_and_suppressed_letters_are_never_queued(
    runtime: Runtime, clock: FixedClock
) -> None:
    ingest_doc(runtime, FEEDBACK, "evt_1")
    unsubscribe = {
        "type": "contact.unsubscribed",
        "timestamp": "2026-11-20T16:00:00Z",
        "data": {"contact": {"email": "k.mueller@example.de"}},
    }
    ingest_doc(runtime, unsubscribe, "evt_2")
    clock.set(datetime(2027, 1, 1, tzinfo=UTC))
    assert tick.tick(runtime).letters_queued == 0


def _bulk_letters(url: str, count: int, due: datetime, start_id: int = 1) -> None:
    """Letters inserted directly (an event row is needed for the foreign key)."""
    engine = create_engine(url)
    with engine.begin() as conn:
        now = datetime(2026, 11, 20, tzinfo=UTC)
        conn.execute(
            text(
                "INSERT INTO inbox (id, source, event_id, received_at, body, body_sha256, status, "
                "enqueue_count) VALUES (1, 'generic', 'e', :now, '{}', '', 'processed', 1)"
            ),
            {"now": now},
        )
        conn.execute(
            text(
                "INSERT INTO events (id, inbox_id, source, external_id, type, occurred_at, "
                "payload, created_at) "
                "VALUES (1, 1, 'generic', 'e', 'deal.closed', :now, '{}', :now)"
            ),
            {"now": now},
        )
        conn.execute(
            insert(Letter),
            [
                {
                    "id": start_id + i,
                    "event_id": 1,
                    "rule": f"r{i}",
                    "letter": "deal_closed",
                    "locale": "en",
                    "contact_email": f"c{i}@example.org",
                    "status": "scheduled",
                    "due_at": due,
                    "message_id": f"<{start_id + i}@t>",
                    "attempt_count": 0,
                    "created_at": now,
                    "updated_at": now,
                }
                for i in range(count)
            ],
        )
        if engine.dialect.name == "postgresql":
            conn.execute(
                text(
                    "SELECT setval(pg_get_serial_sequence('letters', 'id'), "
                    "(SELECT max(id) FROM letters))"
                )
            )
    engine.dispose()


RACE = """
import sys, json
from datetime import datetime, timezone
from worker.db import make_engine, make_session_factory
from worker.scheduling.claims import claim_due_letters
factory = make_session_factory(make_engine(sys.argv[1]))
with factory() as session:  # connected and warm before the start
    session.connection()
now = datetime(2026, 12, 1, tzinfo=timezone.utc)
print("ready", flush=True)
sys.stdin.readline()  # both start claiming at once: a slow start is no race
claimed = []
while True:
    batch = claim_due_letters(factory, now, limit=7)
    if not batch:
        break
    claimed += batch
print(json.dumps(claimed))
"""


def test_two_scheduler_processes_never_claim_a_letter_twice(pg_clean_url: str) -> None:
    db_url = pg_clean_url
    _bulk_letters(db_url, 600, datetime(2026, 11, 21, tzinfo=UTC))
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACE, db_url],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for proc in procs:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    for proc in procs:  # the start, to both before either is waited for
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    results = [json.loads(proc.communicate(timeout=120)[0]) for proc in procs]
    first, second = (set(r) for r in results)
    assert first and second, "both schedulers should have found work"
    assert not first & second  # nothing dispatched twice
    assert first | second == set(range(1, 601))  # nothing left behind
    assert len(results[0]) + len(results[1]) == 600


def test_claiming_is_once_only_on_sqlite_too(db_url: str) -> None:
    from worker.db import make_engine, make_session_factory

    _bulk_letters(db_url, 30, datetime(2026, 11, 21, tzinfo=UTC))
    engine = make_engine(db_url)
    factory = make_session_factory(engine)
    now = datetime(2026, 12, 1, tzinfo=UTC)
    batches = [claim_due_letters(factory, now, limit=8) for _ in range(6)]
    engine.dispose()
    flat = [i for batch in batches for i in batch]
    assert sorted(flat) == list(range(1, 31)) and len(flat) == len(set(flat))


def test_the_tick_query_uses_the_status_due_index_on_sqlite(sqlite_url: str) -> None:
    engine = create_engine(sqlite_url)
    with engine.connect() as conn:
        plan = conn.execute(
            text(
                "EXPLAIN QUERY PLAN SELECT id FROM letters WHERE status = 'scheduled' "
                "AND due_at <= '2026-12-01' ORDER BY due_at, id LIMIT 200"
            )
        ).fetchall()
    engine.dispose()
    assert re.search(
        r"SEARCH letters USING (COVERING )?INDEX ix_letters_status_due_at "
        r"\(status=\? AND due_at<\?\)",
        " ".join(str(row) for row in plan),
    )


def test_the_tick_query_reads_due_rows_not_pending_ones_on_postgresql(pg_clean_url: str) -> None:
    """20,000 letters pending next month, 5 due: the plan is an index range scan that
    touches the due rows only (its cost does not grow with the pending backlog)."""
    db_url = pg_clean_url
    _bulk_letters(db_url, 20_000, datetime(2027, 1, 1, tzinfo=UTC))
    engine = create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(
            insert(Letter),
            [
                {
                    "id": 30_000 + i,
                    "event_id": 1,
                    "rule": f"due{i}",
                    "letter": "deal_closed",
                    "locale": "en",
                    "contact_email": "x@example.org",
                    "status": "scheduled",
                    "due_at": datetime(2026, 11, 25, tzinfo=UTC),
                    "message_id": f"<due{i}@t>",
                    "attempt_count": 0,
                    "created_at": datetime(2026, 11, 20, tzinfo=UTC),
                    "updated_at": datetime(2026, 11, 20, tzinfo=UTC),
                }
                for i in range(5)
            ],
        )
        conn.execute(text("ANALYZE letters"))
        plan = conn.execute(
            text(
                "EXPLAIN (ANALYZE, FORMAT JSON) SELECT id FROM letters WHERE status = 'scheduled' "
                "AND due_at <= '2026-12-01T00:00:00+00' ORDER BY due_at, id LIMIT 200 "
                "FOR UPDATE SKIP LOCKED"
            )
        ).scalar_one()
    engine.dispose()
    text_plan = json.dumps(plan)
    assert "ix_letters_status_due_at" in text_plan
    assert "Seq Scan" not in text_plan

    def rows_read(node: Any) -> int:
        """Rows produced by index scans anywhere in the plan tree."""
        own = int(node.get("Actual Rows", 0)) if "Index" in str(node.get("Node Type")) else 0
        return own + sum(rows_read(child) for child in node.get("Plans", []))

    assert rows_read(plan[0]["Plan"]) == 5


# --- the guard against broker timers -----------------------------------------------------

MAX_BROKER_DELAY_SECONDS = 300


def _long_delays(path: Path) -> list[str]:
    """eta=, or a countdown / retry delay above the limit, as a call keyword or as a key in
    a dict literal (task options are often kept in one)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        pairs: list[tuple[str | None, ast.expr]] = []
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Call):
            pairs = [(k.arg, k.value) for k in node.keywords]
        elif isinstance(node, ast.Dict):
            pairs = [
                (k.value if isinstance(k, ast.Constant) and isinstance(k.value, str) else None, v)
                for k, v in zip(node.keys, node.values, strict=True)
            ]
        for name, value in pairs:
            if name == "eta":
                found.append(f"{path}:{line}: eta (use a due_at row instead)")
            if name in {"countdown", "retry_backoff_max", "default_retry_delay"} and not (
                isinstance(value, ast.Constant)
                and isinstance(value.value, int | float)
                and value.value <= MAX_BROKER_DELAY_SECONDS
            ):
                found.append(
                    f"{path}:{line}: {name} above {MAX_BROKER_DELAY_SECONDS}s or not a constant"
                )
    return found


def test_no_celery_countdown_or_eta_beyond_a_few_minutes() -> None:
    """The database is the clock (docs/architecture.md): long waits live in the database,
    never in the broker."""
    sources = sorted((ROOT / "worker").rglob("*.py")) + sorted((ROOT / "tasks").rglob("*.py"))
    assert len(sources) > 10
    problems = [p for path in sources for p in _long_delays(path)]
    assert problems == []


def test_the_guard_catches_a_long_countdown(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        "send.apply_async(args=[1], countdown=48 * 3600)\nx.apply_async(eta=t)\n"
        'OPTIONS = {"retry_backoff_max": 86400}\n'
    )
    assert len(_long_delays(bad)) == 3


def test_the_wait_passes_on_the_system_clock_with_time_machine(
    tmp_path: Path, sqlite_url: str, time_machine: Any
) -> None:
    """The production clock, moved by time-machine: nothing is due until the day after."""
    from tests.conftest import make_settings
    from worker.runtime import build_runtime

    time_machine.move_to(datetime(2026, 11, 17, 8, 0, tzinfo=UTC), tick=False)  # Tue 09:00 CET
    dispatcher = RecordingDispatcher()
    runtime = build_runtime(make_settings(tmp_path, sqlite_url), dispatcher=dispatcher)
    try:
        doc = dict(FEEDBACK, timestamp="2026-11-17T08:00:00Z")
        [letter] = ingest_doc(runtime, doc, "evt_1")
        assert letter.due_at == datetime(2026, 11, 18, 8, 0, tzinfo=UTC)
        time_machine.move_to(datetime(2026, 11, 18, 7, 59, tzinfo=UTC), tick=False)
        assert tick.tick(runtime).letters_queued == 0
        time_machine.move_to(datetime(2026, 11, 18, 8, 0, tzinfo=UTC), tick=False)
        assert tick.tick(runtime).letters_queued == 1
        assert dispatcher.sent == [(SEND_LETTER, (letter.id,))]
    finally:
        runtime.engine.dispose()
