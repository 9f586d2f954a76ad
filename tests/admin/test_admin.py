"""Admin operations: refusals, dry runs, the audit log, pacing, and a real outage replay."""

from __future__ import annotations

import itertools
import json
import os
import pwd
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text, update
from typer.testing import CliRunner

from tests.conftest import SAMPLES, make_settings
from tests.helpers import all_letters, ingest_doc, run_worker
from tests.smtp_server import refusing_server, smtp_server
from worker.admin import find, operations
from worker.cli.main import app
from worker.clock import FixedClock
from worker.models import AuditEntry, Letter, LetterStatus
from worker.queue import RecordingDispatcher
from worker.runtime import Runtime, build_runtime

FEEDBACK: dict[str, Any] = json.loads((SAMPLES / "feedback_logged.de.json").read_text())
runner = CliRunner()


_SEQ = itertools.count()


def letters_in(runtime: Runtime, statuses: list[str]) -> list[int]:
    """One letter per status (distinct contacts, so the frequency cap stays out of it)."""
    ids = []
    for status in statuses:
        n = next(_SEQ)
        doc = json.loads(json.dumps(FEEDBACK))
        doc["data"]["contact"]["email"] = f"c{n}@example.org"
        [letter] = ingest_doc(runtime, doc, f"evt_{n}")
        with runtime.session_factory.begin() as session:
            session.execute(update(Letter).where(Letter.id == letter.id).values(status=status))
        ids.append(letter.id)
    return ids


ALL = ["failed", "unknown", "sent", "cancelled", "suppressed", "scheduled", "queued", "sending"]


def replay(runtime: Runtime, ids: list[int], **kw: Any) -> operations.Outcome:
    options = {"actor": "tester", "reason": None, "rate_per_second": 2.0} | kw
    return operations.replay(
        runtime.session_factory, find.LetterFilter(ids=ids), runtime.clock.now(), **options
    )


def test_every_refusal_rule(runtime: Runtime) -> None:
    ids = dict(zip(ALL, letters_in(runtime, ALL), strict=True))
    outcome = replay(runtime, list(ids.values()))
    assert outcome.done == [ids["failed"]]
    assert outcome.refused == {
        ids["unknown"]: "outcome unknown: the recipient may already have it (use --force)",
        ids["sent"]: "already sent",
        ids["cancelled"]: "cancelled",
        ids["suppressed"]: "suppressed (unsubscribed or frequency cap)",
        ids["scheduled"]: "still pending: it will be sent anyway",
        ids["queued"]: "still pending: it will be sent anyway",
        ids["sending"]: "being sent right now",
    }


def test_force_replays_unknown_letters_too(runtime: Runtime) -> None:
    failed, unknown = letters_in(runtime, ["failed", "unknown"])
    assert sorted(replay(runtime, [failed, unknown], force=True).done) == [failed, unknown]


def test_a_replay_is_the_same_letter_with_a_fresh_budget_paced(runtime: Runtime) -> None:
    ids = letters_in(runtime, ["failed"] * 5)
    with runtime.session_factory.begin() as session:
        session.execute(update(Letter).values(attempt_count=12))
    before = {x.id: x.message_id for x in all_letters(runtime)}
    outcome = replay(runtime, ids, rate_per_second=2.0)
    letters = {x.id: x for x in all_letters(runtime)}
    assert all(letters[i].message_id == before[i] for i in ids)  # same Message-ID
    assert all(letters[i].status == "scheduled" and letters[i].attempt_count == 0 for i in ids)
    dues = sorted(letters[i].due_at for i in ids)
    assert [b - a for a, b in itertools.pairwise(dues)] == [timedelta(seconds=0.5)] * 4
    assert outcome.when[ids[0]] == runtime.clock.now()


def snapshot(runtime: Runtime) -> list[Any]:
    with runtime.engine.connect() as conn:
        return [
            conn.execute(text(f"SELECT * FROM {t} ORDER BY id")).fetchall()
            for t in ("letters", "audit_log", "attempts")
        ]


def test_dry_run_changes_nothing(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    letters_in(runtime, ALL)
    monkeypatch.setenv("THANKLY_DATABASE_URL", runtime.engine.url.render_as_string(False))
    before = snapshot(runtime)
    result = runner.invoke(app, ["letters", "replay", "--status", "failed", "--dry-run"])
    assert result.exit_code == 0 and "would replay 1" in result.stdout
    assert "dry run: nothing changed" in result.stdout
    result = runner.invoke(app, ["letters", "replay", "1", "2", "3", "--dry-run", "--json"])
    plan = json.loads(result.stdout)
    assert plan["done"] == [1] and plan["refused"]["2"].startswith("outcome unknown")
    assert snapshot(runtime) == before


def test_the_audit_log_keeps_who_when_and_why(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    [failed] = letters_in(runtime, ["failed"])
    monkeypatch.setenv("THANKLY_DATABASE_URL", runtime.engine.url.render_as_string(False))
    result = runner.invoke(
        app,
        ["letters", "replay", str(failed), "--yes", "--reason", "SMTP relay was down 02:00-03:10"],
    )
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "replayed 1" in result.stdout
    with runtime.session_factory() as session:
        [entry] = session.scalars(select(AuditEntry)).all()
    assert entry.action == "replay" and entry.letter_id == failed
    assert entry.actor == f"{pwd.getpwuid(os.getuid()).pw_name} (cli)"  # the real account
    assert entry.reason == "SMTP relay was down 02:00-03:10"
    assert entry.details["from"] == "failed"
    shown = json.loads(runner.invoke(app, ["letters", "show", str(failed), "--json"]).stdout)
    assert any(e["what"] == "admin replay" for e in shown["timeline"])


def test_replay_asks_first_and_refuses_without_a_terminal(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    letters_in(runtime, ["failed"])
    monkeypatch.setenv("THANKLY_DATABASE_URL", runtime.engine.url.render_as_string(False))
    before = snapshot(runtime)
    result = runner.invoke(app, ["letters", "replay", "--status", "failed"])
    assert result.exit_code == 2 and "Add --yes" in result.stderr
    assert snapshot(runtime) == before
    result = runner.invoke(app, ["letters", "replay"])
    assert result.exit_code == 2 and "say which letters" in result.stderr


def test_unknown_letters_need_force_and_get_a_warning(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    [unknown] = letters_in(runtime, ["unknown"])
    monkeypatch.setenv("THANKLY_DATABASE_URL", runtime.engine.url.render_as_string(False))
    plain = runner.invoke(app, ["letters", "replay", str(unknown), "--yes"])
    assert "refused 1: outcome unknown" in plain.stdout
    forced = runner.invoke(app, ["letters", "replay", str(unknown), "--yes", "--force"])
    assert "may receive them twice" in forced.stderr and "replayed 1" in forced.stdout


def test_cancel_and_send_now(runtime: Runtime, clock: FixedClock) -> None:
    scheduled, sent = letters_in(runtime, ["scheduled", "sent"])
    outcome = operations.cancel(
        runtime.session_factory,
        [scheduled, sent, 999],
        clock.now(),
        actor="tester",
        reason="customer asked",
    )
    assert outcome.done == [scheduled]
    assert outcome.refused == {
        sent: "sent: only scheduled or queued letters",
        999: "no such letter",
    }
    [later] = letters_in(runtime, ["scheduled"])
    clock.set(clock.now().replace(hour=20))  # Friday 20:00 UTC = 21:00 in Berlin, closed
    defaults = runtime.rules.get().defaults
    moved = operations.send_now(
        runtime.session_factory,
        [later],
        clock.now(),
        actor="t",
        reason=None,
        window=defaults.send_window,
        default_timezone=defaults.timezone,
    )
    assert moved.when[later].isoformat() == "2026-11-23T08:00:00+00:00"  # Monday 09:00 Berlin
    now = operations.send_now(
        runtime.session_factory,
        [later],
        clock.now(),
        actor="t",
        reason=None,
        window=defaults.send_window,
        default_timezone=defaults.timezone,
        ignore_window=True,
    )
    assert now.when[later] == clock.now()


def test_list_filters_and_pages(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    letters_in(runtime, ["failed", "sent", "failed", "failed"])
    monkeypatch.setenv("THANKLY_DATABASE_URL", runtime.engine.url.render_as_string(False))
    page1 = json.loads(
        runner.invoke(
            app, ["letters", "list", "--status", "failed", "--limit", "2", "--json"]
        ).stdout
    )
    page2 = json.loads(
        runner.invoke(
            app, ["letters", "list", "--status", "failed", "--limit", "2", "--page", "2", "--json"]
        ).stdout
    )
    assert [r["id"] for r in page1] == [4, 3] and [r["id"] for r in page2] == [1]  # newest first
    table = runner.invoke(app, ["letters", "list", "--status", "failed", "--limit", "2"])
    assert "3 letter(s), page 1 of 2; next: --page 2" in table.stdout
    last = runner.invoke(
        app, ["letters", "list", "--status", "failed", "--limit", "2", "--page", "2"]
    )
    assert "3 letter(s), page 2 of 2\n" in last.stdout
    second = all_letters(runtime)[1]
    by_contact = json.loads(
        runner.invoke(
            app, ["letters", "list", "--contact", second.contact_email.upper(), "--json"]
        ).stdout
    )
    assert [r["id"] for r in by_contact] == [second.id]
    later = json.loads(
        runner.invoke(app, ["letters", "list", "--since", "2030-01-01", "--json"]).stdout
    )
    assert later == []


# --- the real thing: an SMTP outage, then one replay ------------------------------------


@pytest.fixture
def outage(smtp_runtimes: Any) -> Any:
    return lambda port: smtp_runtimes(port, max_send_attempts=3)


def drain(runtime: Runtime, clock: FixedClock, seconds: int = 60) -> None:
    run_worker(runtime, clock, rounds=seconds)


def test_replay_after_an_smtp_outage_delivers_each_letter_once(
    outage: Any, clock: FixedClock
) -> None:
    with refusing_server() as down_port:
        down = outage(down_port)
        for i in range(4):
            doc = json.loads(json.dumps(FEEDBACK))
            doc["data"]["contact"]["email"] = f"c{i}@example.org"
            [letter] = ingest_doc(down, doc, f"evt_{i}")
        clock.set(letter.due_at)
        drain(down, clock)
        clock.set(clock.now() + timedelta(minutes=20))  # the retry round, still down
        drain(down, clock)
    failed = [x for x in all_letters(down) if x.status == LetterStatus.FAILED]
    assert len(failed) == 4
    with smtp_server() as (script, up_port):
        up = outage(up_port)
        outcome = operations.replay(
            up.session_factory,
            find.LetterFilter(status="failed"),
            clock.now(),
            actor="tester",
            reason="relay back",
            rate_per_second=2.0,
        )
        assert sorted(outcome.done) == sorted(x.id for x in failed)
        drain(up, clock, seconds=10)
        drain(up, clock, seconds=10)  # more ticks: nothing goes out twice
    assert sorted(script.delivered) == sorted(x.message_id for x in failed)
    assert len(script.delivered) == len(set(script.delivered)) == 4
    assert {x.status for x in all_letters(up)} == {LetterStatus.SENT}


def test_reuse_rendered_sends_what_was_rendered_before(
    tmp_path: Path, db_url: str, clock: FixedClock
) -> None:
    import shutil

    from tests.conftest import TEMPLATES
    from worker.delivery.senders import MemorySender

    templates = tmp_path / "templates"
    shutil.copytree(TEMPLATES, templates)
    sender = MemorySender()
    runtime = build_runtime(
        make_settings(tmp_path, db_url, templates_dir=templates),
        clock=clock,
        dispatcher=RecordingDispatcher(),
        sender=sender,
    )
    try:
        [letter] = ingest_doc(runtime, FEEDBACK, "evt_1")
        clock.set(letter.due_at)
        drain(runtime, clock, seconds=2)
        first_subject = sender.sent[0]["Subject"]
        with runtime.session_factory.begin() as session:  # pretend it bounced afterwards
            session.execute(update(Letter).values(status="failed"))
        subject = templates / "feedback_logged" / "de" / "subject.txt"
        subject.write_text("Neuer Betreff {{ contact.first_name }}")
        for reuse in (True, False):
            replay(runtime, [letter.id], reuse_rendered=reuse)
            drain(runtime, clock, seconds=2)
            with runtime.session_factory.begin() as session:
                session.execute(update(Letter).values(status="failed"))
        subjects = [m["Subject"] for m in sender.sent]
        assert subjects == [first_subject, first_subject, "Neuer Betreff Katrin"]
        assert len({m["Message-ID"] for m in sender.sent}) == 1  # one letter, one Message-ID
    finally:
        runtime.engine.dispose()


def test_cancel_send_now_and_stats_from_the_cli(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    scheduled, later, sent = letters_in(runtime, ["scheduled", "scheduled", "sent"])
    monkeypatch.setenv("THANKLY_DATABASE_URL", runtime.engine.url.render_as_string(False))
    monkeypatch.setenv("THANKLY_RULES_FILE", str(runtime.settings.rules_file))
    monkeypatch.setenv("THANKLY_TEMPLATES_DIR", str(runtime.settings.templates_dir))
    result = runner.invoke(app, ["letters", "cancel", str(scheduled), str(sent)])
    assert result.exit_code == 0
    assert "cancelled 1" in result.stdout and "refused 1: sent: only scheduled" in result.stdout
    refused = runner.invoke(app, ["letters", "cancel", str(sent)])
    assert refused.exit_code == 1
    moved = runner.invoke(app, ["letters", "send-now", str(later), "--ignore-window", "--json"])
    assert json.loads(moved.stdout)["done"] == [later]
    stats = runner.invoke(app, ["stats"], terminal_width=80)
    lines = stats.stdout.splitlines()
    assert stats.exit_code == 0 and max(len(line) for line in lines) <= 80
    [row] = [line for line in lines if line.startswith("feedback_logged/de ")]  # whole, one line
    assert row.split()[1:4] == ["1", "1", "0"]  # scheduled (one was cancelled), sent, failed
    assert json.loads(runner.invoke(app, ["stats", "--json"]).stdout)[0]["sent"] == 1


def test_the_enumerated_values_match_what_the_code_writes() -> None:
    """The valid --status and --error-class values cannot drift from what is stored."""
    import re

    from tests.conftest import ROOT

    statuses = set(LetterStatus)
    assert set(find.STATUSES) == statuses
    mail = "".join(path.read_text() for path in (ROOT / "worker" / "delivery").glob("*.py"))
    raised = set(re.findall(r'SendError\(\s*[^,]+,\s*"([a-z-]+)"', mail))
    assert raised and raised | {"render"} == set(find.ERROR_CLASSES)


def test_a_typo_in_an_option_lists_the_valid_values(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("THANKLY_DATABASE_URL", runtime.engine.url.render_as_string(False))
    for args, valid in (
        (["letters", "list", "--status", "faild"], "scheduled, queued, sending, sent, failed"),
        (["letters", "replay", "--status", "sennt"], "failed, unknown, cancelled"),
        (["letters", "list", "--error-class", "tls"], "connect, ehlo, auth"),
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 2, args
        assert valid in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_exit_1_when_every_letter_was_refused(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    failed, sent = letters_in(runtime, ["failed", "sent"])
    monkeypatch.setenv("THANKLY_DATABASE_URL", runtime.engine.url.render_as_string(False))
    monkeypatch.setenv("THANKLY_RULES_FILE", str(runtime.settings.rules_file))
    monkeypatch.setenv("THANKLY_TEMPLATES_DIR", str(runtime.settings.templates_dir))
    for command in (
        ["letters", "replay", str(sent), "--yes"],
        ["letters", "replay", str(sent), "--dry-run", "--json"],
        ["letters", "cancel", str(sent), "--json"],
        ["letters", "send-now", str(sent), "999"],
    ):
        assert runner.invoke(app, command).exit_code == 1, command
    assert runner.invoke(app, ["letters", "replay", str(failed), str(sent), "--yes"]).exit_code == 0


def test_cancel_and_send_now_dry_runs_refuse_alike_and_change_nothing(runtime: Runtime) -> None:
    ids = letters_in(runtime, ["scheduled", "queued", "failed"])
    before = {x.id: (x.status, x.due_at) for x in all_letters(runtime)}
    now = runtime.clock.now()
    kw: dict[str, Any] = {"actor": "test", "reason": None}
    window: dict[str, Any] = {"window": None, "default_timezone": "UTC"}
    cancel = operations.cancel(runtime.session_factory, ids, now, dry_run=True, **kw)
    send_now = operations.send_now(runtime.session_factory, ids, now, dry_run=True, **kw, **window)
    # The dry runs agree with what the real operations refuse and do.
    assert (cancel.done, sorted(cancel.refused)) == (ids[:2], [ids[2]])
    assert (send_now.done, sorted(send_now.refused)) == (ids[:1], ids[1:])
    assert {x.id: (x.status, x.due_at) for x in all_letters(runtime)} == before
    with runtime.session_factory() as session:
        assert session.scalars(select(AuditEntry)).all() == []
    real = operations.cancel(runtime.session_factory, ids, now, **kw)
    assert (real.done, real.refused) == (cancel.done, cancel.refused)
