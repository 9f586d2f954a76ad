"""The frequency cap counts letters by when they go out, holds under parallel ingests of
one contact, and events older than `defaults.max_event_age` plan nothing."""

from __future__ import annotations

import json
import logging
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from tests.conftest import NOW, RULES_FILE, TEMPLATES, make_settings
from tests.helpers import all_letters, ingest_doc
from worker.clock import FixedClock
from worker.events import validate_event
from worker.intake.inbox import accept
from worker.intake.ingest import ingest
from worker.letters.catalogue import Catalogue
from worker.models import Event, Letter, LetterStatus
from worker.planning.explain import explain
from worker.planning.rules import RulesError, load_rules
from worker.queue import RecordingDispatcher
from worker.runtime import Runtime, build_runtime

RULES = """\
defaults:
  timezone: UTC
  frequency_cap: {max: 1, per: 3d}
  %s
rules:
  - {name: feedback-thanks, on: feedback.logged, letter: feedback_logged, delay: 24h}
"""


def feedback(days_ago: float, feedback_id: str, email: str = "anna@example.org") -> dict[str, Any]:
    at = NOW - timedelta(days=days_ago)
    return {
        "type": "feedback.logged",
        "timestamp": at.isoformat().replace("+00:00", "Z"),
        "data": {"contact": {"email": email}, "feedback": {"id": feedback_id, "rating": 90}},
    }


def runtime_with(tmp_path: Path, db_url: str, extra_defaults: str = "") -> Runtime:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES % extra_defaults)
    settings = make_settings(tmp_path, db_url, rules_file=rules)
    return build_runtime(settings, clock=FixedClock(NOW), dispatcher=RecordingDispatcher())


def test_backdated_events_do_not_release_a_burst_of_letters(tmp_path: Path, db_url: str) -> None:
    # Due 11, 7 and 3 days ago and tomorrow: four days apart on paper, but the three
    # overdue ones would all go out on the next tick, with tomorrow's a day later.
    runtime = runtime_with(tmp_path, db_url)
    for i, days_ago in enumerate([12, 8, 4, 0]):
        ingest_doc(runtime, feedback(days_ago, f"f{i}"), f"evt_{i}")
    letters = all_letters(runtime)
    scheduled = [x for x in letters if x.status == LetterStatus.SCHEDULED]
    assert len(scheduled) == 1
    assert scheduled[0].id == letters[0].id
    for other in letters[1:]:
        assert other.status == LetterStatus.SUPPRESSED
        assert other.status_reason is not None
        assert other.status_reason.startswith(
            f"frequency cap: at most 1 per 72h (letter #{letters[0].id}, due "
            f"{NOW:%Y-%m-%d %H:%M} UTC"  # overdue: it goes out now
        )
    runtime.engine.dispose()


def test_a_letter_sent_long_enough_ago_does_not_block_the_next(tmp_path: Path, db_url: str) -> None:
    runtime = runtime_with(tmp_path, db_url)
    [old] = ingest_doc(runtime, feedback(2.5, "f0"), "evt_0")  # due 36 hours ago
    with runtime.session_factory.begin() as session:
        # Sent by hand at once, 60 hours ago: the cap counts when it went out.
        session.execute(
            update(Letter)
            .where(Letter.id == old.id)
            .values(status=LetterStatus.SENT, sent_at=NOW - timedelta(hours=60))
        )
    [new] = ingest_doc(runtime, feedback(0, "f1"), "evt_1")
    assert new.status == LetterStatus.SCHEDULED
    assert new.planned_at == new.due_at == NOW + timedelta(days=1)
    runtime.engine.dispose()


def test_parallel_ingests_for_one_contact_schedule_only_what_the_cap_allows(
    tmp_path: Path, pg_clean_url: str
) -> None:
    # SQLite serialises writers; PostgreSQL lets these transactions run side by side.
    runtime = runtime_with(tmp_path, pg_clean_url)
    ids = [
        accept(
            runtime.session_factory,
            "generic",
            f"evt_{i}",
            json.dumps(feedback(i / 10, f"f{i}", "Anna@Example.org")).encode(),
            NOW,
        ).inbox_id
        for i in range(8)
    ]
    start = threading.Barrier(len(ids))
    outcomes: list[str] = []

    def run(inbox_id: int) -> None:
        start.wait()
        result = ingest(runtime.session_factory, inbox_id, runtime.clock, runtime.planner)
        outcomes.append(result.outcome)

    threads = [threading.Thread(target=run, args=(i,)) for i in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert outcomes == ["ingested"] * 8
    statuses = [x.status for x in all_letters(runtime)]
    assert sorted(statuses) == [LetterStatus.SCHEDULED] + [LetterStatus.SUPPRESSED] * 7
    runtime.engine.dispose()


# --- defaults.max_event_age ----------------------------------------------------------------


def test_an_event_older_than_max_event_age_plans_nothing_and_says_why(
    tmp_path: Path, db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    runtime = runtime_with(tmp_path, db_url, "max_event_age: 14d")
    with caplog.at_level(logging.INFO, logger="worker.planning.planner"):
        assert ingest_doc(runtime, feedback(20.5, "f0"), "evt_old") == []
    assert (
        "no letter: feedback-thanks: event is 20d old, over max_event_age 14d "
        "(event evt_old to …@example.org)"
    ) in caplog.messages
    with runtime.session_factory() as session:
        event = session.scalars(select(Event).where(Event.external_id == "evt_old")).one()
    assert event.decisions == [
        {
            "rule": "feedback-thanks",
            "outcome": "no letter",
            "reason": "event is 20d old, over max_event_age 14d",
            "letter_id": None,
        }
    ]
    [fresh] = ingest_doc(runtime, feedback(13, "f1"), "evt_fresh")
    assert fresh.status == LetterStatus.SCHEDULED
    runtime.engine.dispose()


def test_max_event_age_is_14_days_unless_set(tmp_path: Path, sqlite_url: str) -> None:
    runtime = runtime_with(tmp_path, sqlite_url)
    assert ingest_doc(runtime, feedback(15, "f0"), "evt_old") == []
    runtime.engine.dispose()


def test_explain_shows_the_age_limit(tmp_path: Path) -> None:
    catalogue = Catalogue.scan(TEMPLATES)
    rules = load_rules(RULES_FILE, catalogue)
    old = validate_event(feedback(30, "f0"))
    result = explain(old, rules, catalogue, now=NOW)
    assert result["letter"] is None
    assert result["reason"] == (
        "feedback-complaint: event is 30d old, over max_event_age 14d; "
        "feedback-thanks: event is 30d old, over max_event_age 14d"
    )
    assert explain(old, rules, catalogue, now=NOW - timedelta(days=20))["letter"] is not None


def test_max_event_age_is_validated_like_other_durations(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(RULES % "max_event_age: two weeks")
    with pytest.raises(RulesError) as caught:
        load_rules(path, Catalogue.scan(TEMPLATES))
    assert caught.value.lines() == [
        f"{path}:4: defaults.max_event_age: 'two weeks' is not a duration: write a whole "
        "number and a unit (s, m, h, d, w) with no space, e.g. 48h, 90m, 3d or 0s"
    ]
