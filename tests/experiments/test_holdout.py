"""Holdout letters are planned, recorded `held_out`, and never sent by any path; every
letter of an experiment carries its arm, to the CRM too."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import select
from typer.testing import CliRunner

from tests.conftest import NOW
from tests.experiments.conftest import EXPERIMENT, MakeRuntime, deal, later, rewrite_rules
from tests.helpers import all_letters, ingest_doc
from worker.admin import operations
from worker.admin.find import LetterFilter
from worker.cli.main import app
from worker.clock import FixedClock
from worker.delivery.senders import MemorySender
from worker.experiments.assignment import choose_arm
from worker.http.app import create_app
from worker.jobs import run_enqueued
from worker.models import CrmActivity, Letter, LetterStatus
from worker.planning.rules_model import HOLDOUT
from worker.queue import RecordingDispatcher
from worker.runtime import Runtime
from worker.scheduling import tick

TOKEN = "t" * 40
# The long paragraph the `short` variant leaves out (templates/deal_closed/en/body.txt).
LONG_PARAGRAPH = "It also helps us to know what matters most to you"


def contact_in(runtime: Runtime, arm: str, n: int = 0) -> str:
    """The n-th generated address the experiment puts in `arm`."""
    _, test = runtime.rules.get().experiments["deal-thanks-q1"]
    found = (f"c{i}@example.org" for i in range(10_000))
    return [c for c in found if choose_arm(test, c) == arm][n]


def send_everything_due(runtime: Runtime, clock: FixedClock) -> None:
    clock.set(later(3))
    tick.tick(runtime)
    assert isinstance(runtime.dispatcher, RecordingDispatcher)
    run_enqueued(runtime, runtime.dispatcher.sent)


@pytest.fixture
def planned(make_runtime: MakeRuntime) -> tuple[Runtime, dict[str, Letter]]:
    runtime = make_runtime(admin_token=SecretStr(TOKEN))
    letters = {}
    for arm in ("a", "b", HOLDOUT):
        [letters[arm]] = ingest_doc(runtime, deal(contact_in(runtime, arm), f"d-{arm}"), arm)
    return runtime, letters


@pytest.fixture
def cli(planned: tuple[Runtime, dict[str, Letter]], monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    runtime, _ = planned
    monkeypatch.setenv("THANKLY_DATABASE_URL", runtime.engine.url.render_as_string(False))
    monkeypatch.setenv("THANKLY_RULES_FILE", str(runtime.settings.rules_file))
    return CliRunner()


@pytest.fixture
def api(planned: tuple[Runtime, dict[str, Letter]]) -> Iterator[TestClient]:
    runtime, _ = planned
    with TestClient(create_app(runtime), headers={"authorization": f"Bearer {TOKEN}"}) as client:
        yield client


def test_a_holdout_letter_is_planned_like_the_others_and_held_out(
    planned: tuple[Runtime, dict[str, Letter]],
) -> None:
    _, letters = planned
    held = letters[HOLDOUT]
    assert held.status == LetterStatus.HELD_OUT
    assert (
        held.status_reason == "experiment deal-thanks-q1: the contact is in the holdout, never sent"
    )
    assert (held.experiment, held.arm) == ("deal-thanks-q1", HOLDOUT)
    # Its due time is when it would have gone: the clock its conversions start on.
    assert held.due_at == letters["a"].due_at == NOW.replace(day=21)
    for arm in ("a", "b"):
        assert letters[arm].status == LetterStatus.SCHEDULED
        assert (letters[arm].experiment, letters[arm].arm) == ("deal-thanks-q1", arm)


def test_the_scheduler_sends_the_variants_and_never_the_holdout(
    planned: tuple[Runtime, dict[str, Letter]], clock: FixedClock, sender: MemorySender
) -> None:
    runtime, letters = planned
    send_everything_due(runtime, clock)
    assert sorted(m["To"] for m in sender.sent) == sorted(
        letters[a].contact_email for a in ("a", "b")
    )
    by_arm = {x.arm: x for x in all_letters(runtime)}
    assert by_arm[HOLDOUT].status == LetterStatus.HELD_OUT
    assert by_arm["a"].status == by_arm["b"].status == LetterStatus.SENT
    # b is the `short` variant of the same letter folder; a is the full letter.
    texts = {m["To"]: m.get_body(("plain",)).get_content() for m in sender.sent}  # type: ignore[union-attr]
    assert LONG_PARAGRAPH in texts[letters["a"].contact_email]
    assert LONG_PARAGRAPH not in texts[letters["b"].contact_email]


def test_replay_and_send_now_refuse_a_holdout_letter_with_the_reason(
    planned: tuple[Runtime, dict[str, Letter]],
) -> None:
    runtime, letters = planned
    held = letters[HOLDOUT].id
    common: dict[str, Any] = {"actor": "test", "reason": "try"}
    outcomes = [
        operations.replay(
            runtime.session_factory,
            LetterFilter(ids=[held]),
            NOW,
            rate_per_second=1,
            force=True,
            **common,
        ),
        operations.send_now(
            runtime.session_factory,
            [held],
            NOW,
            window=None,
            default_timezone="UTC",
            ignore_window=True,
            **common,
        ),
    ]
    for outcome in outcomes:
        assert outcome.done == []
        assert outcome.refused == {
            held: "held out by experiment deal-thanks-q1: a holdout letter is never sent "
            "(the contact is the comparison group)"
        }
    assert {x.id: x.status for x in all_letters(runtime)}[held] == LetterStatus.HELD_OUT


def test_the_cli_and_the_api_refuse_it_too(
    planned: tuple[Runtime, dict[str, Letter]], cli: CliRunner, api: TestClient
) -> None:
    runtime, letters = planned
    held = str(letters[HOLDOUT].id)
    replayed = cli.invoke(app, ["letters", "replay", held, "--force", "--yes", "--reason", "x"])
    assert "held out by experiment deal-thanks-q1" in replayed.output
    sent_now = cli.invoke(app, ["letters", "send-now", held, "--reason", "x"])
    assert "held out by experiment deal-thanks-q1" in sent_now.output
    for path, body in (
        ("/admin/letters/replay", {"ids": [int(held)], "force": True}),
        ("/admin/letters/send-now", {"ids": [int(held)]}),
    ):
        refused = api.post(path, json=body).json()["refused"]
        assert refused[held].startswith("held out by experiment deal-thanks-q1")
    assert {x.arm: x.status for x in all_letters(runtime)}[HOLDOUT] == LetterStatus.HELD_OUT


def test_letters_list_and_show_name_the_arm(
    planned: tuple[Runtime, dict[str, Letter]], cli: CliRunner, api: TestClient
) -> None:
    _, letters = planned
    listed = json.loads(cli.invoke(app, ["letters", "list", "--json"]).stdout)
    assert {x["arm"] for x in listed} == {"a", "b", HOLDOUT}
    assert {x["experiment"] for x in listed} == {"deal-thanks-q1"}
    assert {x["status"] for x in listed if x["arm"] == HOLDOUT} == {"held_out"}
    shown = cli.invoke(app, ["letters", "show", str(letters["b"].id)]).stdout
    assert "experiment deal-thanks-q1, arm b" in shown
    api_list = api.get("/admin/letters", params={"status": "held_out"}).json()["letters"]
    assert [x["arm"] for x in api_list] == [HOLDOUT]


def test_rules_explain_shows_the_arm_a_contact_has(
    planned: tuple[Runtime, dict[str, Letter]], cli: CliRunner, tmp_path: Path
) -> None:
    _, letters = planned
    for arm in ("b", HOLDOUT):
        event = tmp_path / f"{arm}.json"
        event.write_text(json.dumps(deal(letters[arm].contact_email, "d-new")))
        at = ["--at", NOW.isoformat()]  # judged as if it arrived when it happened
        explained = json.loads(
            cli.invoke(app, ["rules", "explain", str(event), *at, "--json"]).stdout
        )
        assert (explained["experiment"], explained["arm"]) == ("deal-thanks-q1", arm)
        assert explained["held_out"] is (arm == HOLDOUT)
        assert explained["arms_from"] == "the contact's stored arm, else the hash"
        text = cli.invoke(app, ["rules", "explain", str(event), *at]).stdout
        assert f"arm      {arm} of experiment deal-thanks-q1" in text
        assert ("held out: no letter is sent" in text) is (arm == HOLDOUT)


def test_holdout_letters_do_not_count_against_the_frequency_cap_but_obey_it(
    make_runtime: MakeRuntime,
) -> None:
    runtime = make_runtime(defaults="frequency_cap: {max: 1, per: 7d}")
    held, variant = contact_in(runtime, HOLDOUT), contact_in(runtime, "a")
    [first] = ingest_doc(runtime, deal(held, "d-1"), "e1")
    assert first.status == LetterStatus.HELD_OUT
    # Nothing went out to the held-out contact: a referral thank-you the same week goes.
    referral = deal(held, "d-2", event_type="referral.made")
    referral["data"]["referral"] = {"referred_name": "Olga"}
    [thanks] = ingest_doc(runtime, referral, "e2")
    assert thanks.status == LetterStatus.SCHEDULED
    # The cap then stops a second deal's letter in the holdout exactly as in a variant.
    for email, n in ((held, 3), (variant, 4), (variant, 5)):
        ingest_doc(runtime, deal(email, f"d-{n}"), f"e{n}")
    statuses = [(x.contact_email, x.arm, x.status) for x in all_letters(runtime)]
    assert statuses[2:] == [
        (held, HOLDOUT, LetterStatus.SUPPRESSED),
        (variant, "a", LetterStatus.SCHEDULED),
        (variant, "a", LetterStatus.SUPPRESSED),
    ]


def activities(runtime: Runtime) -> list[CrmActivity]:
    with runtime.session_factory() as session:
        return list(session.scalars(select(CrmActivity).order_by(CrmActivity.id)))


def test_a_held_out_note_is_written_for_when_the_letter_would_have_gone_only_if_asked(
    make_runtime: MakeRuntime,
) -> None:
    quiet = make_runtime()
    ingest_doc(quiet, deal(contact_in(quiet, HOLDOUT), "d-1"), "e1")
    assert activities(quiet) == []


def test_with_note_held_out_the_crm_hears_of_it_at_the_would_be_send_time(
    make_runtime: MakeRuntime, clock: FixedClock, sender: MemorySender
) -> None:
    runtime = make_runtime(experiment=EXPERIMENT + "      note_held_out: true\n")
    [held] = ingest_doc(runtime, deal(contact_in(runtime, HOLDOUT), "d-1"), "e1")
    [sent] = ingest_doc(runtime, deal(contact_in(runtime, "a"), "d-2"), "e2")
    [note] = activities(runtime)
    assert (note.kind, note.letter_id) == ("email.held_out", held.id)
    assert note.next_attempt_at == held.due_at and note.created_at == NOW
    assert note.payload["data"]["arm"] == HOLDOUT
    assert note.payload["data"]["experiment"] == "deal-thanks-q1"
    send_everything_due(runtime, clock)
    sent_activity = [a for a in activities(runtime) if a.kind == "email.sent"]
    assert [(a.letter_id, a.payload["data"]["arm"]) for a in sent_activity] == [(sent.id, "a")]


def test_a_reschedule_moves_a_holdout_letters_would_be_time_with_the_others(
    planned: tuple[Runtime, dict[str, Letter]],
) -> None:
    from worker.planning.reschedule import reschedule

    runtime, letters = planned
    rewrite_rules(runtime, EXPERIMENT, delay="48h")
    rules = runtime.rules.get()
    changes = reschedule(
        runtime.session_factory, rules, runtime.rules.catalogue, NOW, dry_run=False, actor="ops"
    )
    assert {c.letter_id for c in changes if c.moves} == {x.id for x in letters.values()}
    after = {x.arm: x for x in all_letters(runtime)}
    assert after[HOLDOUT].due_at == after["a"].due_at == letters["a"].due_at + timedelta(days=1)
    assert after[HOLDOUT].status == LetterStatus.HELD_OUT
