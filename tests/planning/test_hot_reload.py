"""A saved rules edit applies to the next event; a broken edit is refused, loudly."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import NOW, RULES_FILE, SAMPLES, TEMPLATES, make_settings
from tests.helpers import in_monday_opening, ingest_doc
from worker.clock import FixedClock
from worker.planning.rules import RulesError, RulesStore
from worker.queue import RecordingDispatcher
from worker.runtime import Runtime, build_runtime

FEEDBACK = json.loads((SAMPLES / "feedback_logged.de.json").read_text())


def save(path: Path, text: str) -> None:
    """Write and move the mtime on, as an editor's save does (no same-tick ambiguity)."""
    previous = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text)
    os.utime(path, ns=(previous + 10**9, previous + 10**9))


@pytest.fixture
def rules_path(tmp_path: Path) -> Path:
    path = tmp_path / "rules.yaml"
    save(path, RULES_FILE.read_text())
    return path


def test_an_edit_is_used_without_a_restart(rules_path: Path) -> None:
    store = RulesStore(rules_path, TEMPLATES)
    assert str(store.get().rule("feedback-thanks").delay) == "24h"  # type: ignore[union-attr]
    save(rules_path, rules_path.read_text().replace("delay: 24h}", "delay: 48h}"))
    assert str(store.get().rule("feedback-thanks").delay) == "48h"  # type: ignore[union-attr]


def test_a_broken_edit_is_refused_and_the_last_rules_stay(
    rules_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = RulesStore(rules_path, TEMPLATES)
    good = store.get()
    save(rules_path, rules_path.read_text().replace("delay: 24h}", "delay: 2 days}"))
    with caplog.at_level(logging.ERROR):
        assert store.get() is good
    assert "REFUSED" in caplog.text and "'2 days' is not a duration" in caplog.text
    assert store.last_error is not None
    caplog.clear()
    assert store.get() is good  # the same broken file is not re-parsed and re-logged each time
    assert caplog.text == ""
    save(rules_path, rules_path.read_text().replace("2 days", "72h"))
    assert str(store.get().rule("feedback-thanks").delay) == "72h"  # type: ignore[union-attr]
    assert store.last_error is None


def test_a_deleted_file_keeps_the_last_rules(rules_path: Path) -> None:
    store = RulesStore(rules_path, TEMPLATES)
    good = store.get()
    rules_path.unlink()
    assert store.get() is good


def test_without_any_valid_rules_there_is_no_guessing(rules_path: Path) -> None:
    save(rules_path, "rules: nope\n")
    with pytest.raises(RulesError):
        RulesStore(rules_path, TEMPLATES).get()


@pytest.fixture
def reload_runtime(tmp_path: Path, rules_path: Path, sqlite_url: str) -> Iterator[Runtime]:
    settings = make_settings(tmp_path, sqlite_url, rules_file=rules_path)
    runtime = build_runtime(settings, clock=FixedClock(NOW), dispatcher=RecordingDispatcher())
    yield runtime
    runtime.engine.dispose()


def test_the_next_event_after_an_edit_uses_the_new_rules(
    reload_runtime: Runtime, rules_path: Path
) -> None:
    [before] = ingest_doc(reload_runtime, FEEDBACK, "evt_1")
    assert in_monday_opening(before.due_at)  # Fri 15:30 +24h → Mon 09:00, spread
    save(
        rules_path,
        rules_path.read_text().replace(
            "days: [mon, tue, wed, thu, fri]", "days: [mon, tue, wed, thu, fri, sat]"
        ),
    )
    other = dict(
        FEEDBACK,
        data=dict(
            FEEDBACK["data"], contact=dict(FEEDBACK["data"]["contact"], email="other@example.de")
        ),
    )
    [after] = ingest_doc(reload_runtime, other, "evt_2")
    assert after.due_at.isoformat() == "2026-11-21T15:30:00+00:00"  # Saturday now allowed
