"""`thankly experiments list|report` and `/admin/experiments`: the same report, clear
errors, and an experiment closed with `winner:` that keeps its history."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from typer.testing import CliRunner

from tests.conftest import NOW
from tests.experiments.conftest import EXPERIMENT, MakeRuntime, deal, rewrite_rules
from tests.experiments.test_holdout import contact_in
from tests.helpers import all_letters, ingest_doc
from worker.cli.main import app
from worker.clock import FixedClock
from worker.models import LetterStatus
from worker.planning.rules_model import HOLDOUT
from worker.runtime import Runtime

TOKEN = "r" * 40


@pytest.fixture
def running(make_runtime: MakeRuntime, monkeypatch: pytest.MonkeyPatch) -> Runtime:
    runtime = make_runtime(admin_token=SecretStr(TOKEN))
    for n in range(30):
        ingest_doc(runtime, deal(f"c{n}@example.org", f"d-{n}"), f"e{n}")
    monkeypatch.setenv("THANKLY_DATABASE_URL", runtime.engine.url.render_as_string(False))
    monkeypatch.setenv("THANKLY_RULES_FILE", str(runtime.settings.rules_file))
    return runtime


@pytest.fixture
def api(running: Runtime) -> Iterator[TestClient]:
    from worker.http.app import create_app

    with TestClient(create_app(running), headers={"authorization": f"Bearer {TOKEN}"}) as client:
        yield client


def cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_list_shows_the_running_experiment_with_its_letters(running: Runtime) -> None:
    code, out, _ = cli("experiments", "list", "--json")
    assert code == 0
    [row] = json.loads(out)
    assert row["experiment"] == "deal-thanks-q1" and row["rule"] == "deal-closed-thanks"
    assert (row["status"], row["arms"], row["letters"]) == ("running", ["a", "b", HOLDOUT], 30)
    code, text, _ = cli("experiments", "list")
    assert code == 0 and "deal-thanks-q1" in text and "running" in text


def test_the_report_in_json_and_text_and_over_the_api_agree(
    running: Runtime, api: TestClient
) -> None:
    code, out, _ = cli("experiments", "report", "deal-thanks-q1", "--json")
    assert code == 0
    result = json.loads(out)
    letters = all_letters(running)
    assert {r["arm"]: r["planned"] for r in result["arms"]} == {
        arm: sum(x.arm == arm for x in letters) for arm in ("a", "b", HOLDOUT)
    }
    assert result["status"] == "running" and result["window"] == "90d"
    # 30 letters, no conversions yet: nothing to compare against, nothing called.
    assert all(c["decided"] is False for c in result["comparisons"])
    served = api.get("/admin/experiments/deal-thanks-q1").json()
    assert served["arms"] == result["arms"] and served["comparisons"] == result["comparisons"]
    assert [x["experiment"] for x in api.get("/admin/experiments").json()["experiments"]] == [
        "deal-thanks-q1"
    ]
    code, text, _ = cli("experiments", "report", "deal-thanks-q1")
    assert code == 0
    assert "experiment deal-thanks-q1 (running)" in text
    assert "a vs holdout:" in text and "No conversions in holdout yet" in text


def test_since_keeps_letters_planned_from_then(running: Runtime, clock: FixedClock) -> None:
    clock.set(NOW + timedelta(days=3))
    ingest_doc(running, deal("late@example.org", "d-late", clock.now()), "late")
    since = (NOW + timedelta(days=2)).isoformat()
    code, out, _ = cli("experiments", "report", "deal-thanks-q1", "--since", since, "--json")
    assert code == 0
    assert sum(r["planned"] for r in json.loads(out)["arms"]) == 1


def test_unknown_experiments_are_errors_not_empty_reports(
    running: Runtime, api: TestClient
) -> None:
    code, out, err = cli("experiments", "report", "no-such-test")
    assert code == 1 and out == ""
    assert "no experiment 'no-such-test': not in the rules and no letter names it" in err
    assert api.get("/admin/experiments/no-such-test").status_code == 404
    assert api.get("/admin/experiments/Bad%20Name").status_code == 422
    api.headers.pop("authorization")
    assert api.get("/admin/experiments/deal-thanks-q1").status_code == 401


def test_a_winner_closes_it_all_later_letters_are_the_winners_and_history_stays(
    running: Runtime,
) -> None:
    _, out, _ = cli("experiments", "report", "deal-thanks-q1", "--json")
    before = {r["arm"]: r["planned"] for r in json.loads(out)["arms"]}
    held = contact_in(running, HOLDOUT)  # (with a winner, nobody is)
    rewrite_rules(running, EXPERIMENT + "      winner: b\n")
    [letter] = ingest_doc(running, deal(held, "d-after"), "after")
    # The contact was held out; now gets b's letter (the short variant), outside the
    # experiment.
    assert letter.status == LetterStatus.SCHEDULED
    assert (letter.experiment, letter.arm, letter.letter) == (None, "b", "deal_closed")
    rule = running.rules.get().rule(letter.rule)
    assert rule is not None and rule.for_arm(letter.arm).variant == "short"
    code, out, _ = cli("experiments", "report", "deal-thanks-q1", "--json")
    result = json.loads(out)
    assert code == 0 and result["status"] == "closed: winner b" and result["winner"] == "b"
    assert {r["arm"]: r["planned"] for r in result["arms"]} == before
    assert result["verdict"].startswith("Closed: every letter since goes out as b")
    [row] = json.loads(cli("experiments", "list", "--json")[1])
    assert row["status"] == "closed: winner b"
