"""`thankly rules explain` and `thankly rules apply --reschedule`, as ops staff use them."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import time_machine
from sqlalchemy import select
from typer.testing import CliRunner

from tests.conftest import NOW, RULES_FILE, SAMPLES, TEMPLATES
from tests.helpers import all_letters, in_monday_opening, ingest_doc
from worker.cli.main import app
from worker.models import Letter
from worker.runtime import Runtime

runner = CliRunner()


@pytest.fixture(autouse=True)
def _today_is_the_samples_day() -> Iterator[None]:
    """`rules explain` judges an event's age against the real clock; the samples are dated
    2026-11-20, so these tests run as if it were that day."""
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES_FILE.read_text())
    monkeypatch.setenv("THANKLY_RULES_FILE", str(rules))
    monkeypatch.setenv("THANKLY_TEMPLATES_DIR", str(TEMPLATES))
    return rules


def invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args), prog_name="thankly")
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize(
    ("sample", "locale", "local_due"),
    [
        ("deal_closed.ru.json", "ru", "2026-11-23T09:00:00+03:00"),
        ("feedback_logged.de.json", "de", "2026-11-23T09:00:00+01:00"),
        ("referral_made.pl.json", "pl", "2026-11-23T09:00:00+01:00"),
    ],
)
def test_explain_json_for_each_sample(env: Path, sample: str, locale: str, local_due: str) -> None:
    code, out, _ = invoke("rules", "explain", str(SAMPLES / sample), "--json")
    assert code == 0
    result = json.loads(out)
    assert result["locale"] == locale and result["reason"] is None
    # Weekend events wait for Monday 09:00, locally, spread over the two hours after it.
    opening, due = datetime.fromisoformat(local_due), datetime.fromisoformat(result["due_local"])
    assert opening <= due <= opening + timedelta(hours=2)
    assert due.utcoffset() == opening.utcoffset()
    assert result["due_at"].endswith("Z")


def test_explain_in_words(env: Path) -> None:
    code, out, _ = invoke("rules", "explain", str(SAMPLES / "deal_closed.ru.json"))
    assert code == 0
    assert "rule     deal-closed-thanks" in out
    assert "letter   deal_closed in ru" in out
    [when] = re.findall(r"2026-11-23T(\d\d:\d\d:\d\d)\+03:00 Europe/Moscow", out)
    assert "09:00:00" <= when <= "11:00:00"  # Monday's opening, spread


def test_explain_at_a_weekday_morning(env: Path) -> None:
    code, out, _ = invoke(
        "rules",
        "explain",
        str(SAMPLES / "feedback_logged.de.json"),
        "--at",
        "2026-11-17T08:00:00Z",
        "--json",
    )
    assert code == 0
    assert json.loads(out)["due_at"] == "2026-11-18T08:00:00Z"  # Tue 09:00 + 24h, inside


def test_explain_why_nothing_is_sent(env: Path, tmp_path: Path) -> None:
    code, out, _ = invoke("rules", "explain", str(SAMPLES / "deal_closed.minimal.en.json"))
    assert code == 0
    assert "nothing is sent: deal-closed-thanks: condition not met: deal.amount is missing" in out
    lost = tmp_path / "lost.json"
    lost.write_text(
        json.dumps(
            {
                "type": "deal.lost",
                "timestamp": "2026-11-20T10:00:00Z",
                "data": {"deal": {"id": "d-1"}},
            }
        )
    )
    code, out, _ = invoke("rules", "explain", str(lost), "--json")
    assert json.loads(out)["reason"] == (
        "deal.lost sends no letter; it cancels pending letters of deal-closed-thanks for deal d-1"
    )


def test_explain_falls_back_to_the_default_locale(env: Path, tmp_path: Path) -> None:
    doc = json.loads((SAMPLES / "deal_closed.ru.json").read_text())
    doc["data"]["contact"]["locale"] = "fr-CA"
    event = tmp_path / "fr.json"
    event.write_text(json.dumps(doc))
    code, out, _ = invoke("rules", "explain", str(event))
    assert code == 0
    assert "letter   deal_closed in en (contact's locale 'fr-CA' falls back)" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.json"], "cannot read missing.json"),
        (["--at", "tomorrow"], "is not an ISO date-time"),
        (["--at", "2026-11-20T10:00:00"], "--at needs a time zone"),
    ],
)
def test_explain_usage_errors(env: Path, args: list[str], message: str) -> None:
    if args[0].startswith("--"):
        args = [str(SAMPLES / "deal_closed.ru.json"), *args]
    code, _, err = invoke("rules", "explain", *args)
    assert code == 2 and message in err


def test_explain_refuses_an_invalid_event(env: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"type": "deal.closed", "timestamp": "2026-11-20T10:00:00Z", "data": {}}')
    code, _, err = invoke("rules", "explain", str(bad))
    assert code == 2 and "data.contact.email is required" in err


def test_reschedule_after_a_delay_change(
    env: Path, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("THANKLY_DATABASE_URL", str(runtime.engine.url.render_as_string(False)))
    feedback = json.loads((SAMPLES / "feedback_logged.de.json").read_text())
    [letter] = ingest_doc(runtime, feedback, "evt_1")
    was = letter.due_at
    assert in_monday_opening(was)
    env.write_text(env.read_text().replace("delay: 24h}", "delay: 72h}", 1))  # feedback rule
    os.utime(env, ns=(env.stat().st_mtime_ns + 10**9,) * 2)

    code, out, _ = invoke("rules", "apply", "--reschedule", "--dry-run")
    assert code == 0
    assert f"#{letter.id} feedback-thanks: {was.isoformat()} → 2026-11-23T15:30:00+00:00" in out
    assert "would move 1 of 1" in out
    assert all_letters(runtime)[0].due_at == letter.due_at  # dry run: nothing changed

    code, out, _ = invoke("rules", "apply", "--reschedule", "--json")
    assert code == 0
    [change] = json.loads(out)
    assert change["moves"] and change["new_due_at"] == "2026-11-23T15:30:00+00:00"
    with runtime.session_factory() as session:
        due = session.scalar(select(Letter.due_at).where(Letter.id == letter.id))
    assert due is not None and due.isoformat() == "2026-11-23T15:30:00+00:00"


def test_reschedule_leaves_letters_of_removed_rules_and_says_so(
    env: Path, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("THANKLY_DATABASE_URL", str(runtime.engine.url.render_as_string(False)))
    [letter] = ingest_doc(
        runtime, json.loads((SAMPLES / "referral_made.pl.json").read_text()), "evt_1"
    )
    env.write_text(
        "\n".join(line for line in env.read_text().splitlines() if "referral-thanks" not in line)
    )
    code, out, _ = invoke("rules", "apply", "--reschedule")
    assert code == 0
    assert f"#{letter.id} referral-thanks: left as is, rule no longer exists" in out
    assert all_letters(runtime)[0].due_at == letter.due_at


def test_apply_needs_to_be_told_what(env: Path) -> None:
    code, _, err = invoke("rules", "apply")
    assert code == 2 and "--reschedule" in err


def test_explain_says_an_old_event_plans_nothing(env: Path) -> None:
    with time_machine.travel(NOW + timedelta(days=20), tick=False):
        code, out, _ = invoke("rules", "explain", str(SAMPLES / "deal_closed.ru.json"))
        # --at: as if it happened, and arrived, then; so a sample's due time can be explored.
        recent = invoke("rules", "explain", str(SAMPLES / "deal_closed.ru.json"), "--at",
                        "2026-11-20T10:00:00Z")  # fmt: skip
    assert code == 0 and "nothing is sent" in out and "over max_event_age 14d" in out
    assert "rule     deal-closed-thanks" in recent[1]
