"""The rules file: clear errors with file:line and what to write instead."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from textwrap import dedent

import pytest

from tests.conftest import RULES_FILE, TEMPLATES
from tests.helpers import thankly_in_process
from worker.letters.catalogue import Catalogue
from worker.planning.rules import RulesError, load_rules, parse_rules

CATALOGUE = Catalogue.scan(TEMPLATES)

VALID = dedent(
    """\
    defaults:
      timezone: Europe/Berlin
      locale: en
      send_window: {days: [mon, tue, wed, thu, fri], start: "09:00", end: "18:00"}
      frequency_cap: {max: 1, per: 7d}
    rules:
      - name: deal-closed-thanks
        on: deal.closed
        letter: deal_closed
        delay: {min: 24h, max: 72h}
        when: {deal.amount: {gte: 100}}
        cancel_on: [deal.reopened, deal.lost]
      - {name: feedback-thanks, on: feedback.logged, letter: feedback_logged, delay: 24h}
    """
)


def problems(text: str) -> list[str]:
    with pytest.raises(RulesError) as info:
        parse_rules(text, Path("rules.yaml"), CATALOGUE)
    return info.value.lines()


def test_shipped_rules_are_valid() -> None:
    rules = load_rules(RULES_FILE, CATALOGUE)
    assert [r.name for r in rules.rules] == [
        "deal-closed-thanks",
        "feedback-complaint",
        "feedback-thanks",
        "referral-thanks",
    ]
    deal = rules.rules[0]
    assert deal.on == "deal.closed"  # YAML 1.1 would have read the key `on` as True
    assert str(deal.delay) == "24h to 72h"
    complaint = rules.rules[1]
    assert (complaint.letter, complaint.cap_exempt, str(complaint.delay)) == (
        "feedback_negative",
        True,
        "0s",
    )


def test_the_catalogue_has_every_letter_in_every_shipped_locale() -> None:
    for letter in ("deal_closed", "feedback_logged", "feedback_negative", "referral_made"):
        assert CATALOGUE.letters[letter] == {"en", "ru", "de", "pl"}


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "delay: {min: 24h, max: 72h}",
            "delay: {min: 24h, max: 72 hours}",
            "rules.yaml:10: rules[0] (deal-closed-thanks).delay: '72 hours' is not a duration: "
            "write a whole number and a unit (s, m, h, d, w) with no space, e.g. 48h",
        ),
        (
            "delay: 24h}",
            "delay: 48 hours}",
            "rules.yaml:13: rules[1] (feedback-thanks).delay: '48 hours' is not a duration",
        ),
        (
            "letter: deal_closed",
            "letter: deal_closd",
            "rules.yaml:9: rules[0] (deal-closed-thanks).letter: no letter 'deal_closd' in the "
            "templates folder; did you mean deal_closed?",
        ),
        (
            "timezone: Europe/Berlin",
            "timezone: Europe/Berln",
            "rules.yaml:2: defaults.timezone: 'Europe/Berln' is not a time zone: use an IANA name",
        ),
        (
            "locale: en",
            "locale: fr",
            "rules.yaml:9: rules[0] (deal-closed-thanks).letter: deal_closed has no 'fr' version",
        ),
        (
            "    cancel_on:",
            "    cancel_after: 3d\n    cancel_on:",
            "rules.yaml:12: rules[0] (deal-closed-thanks).cancel_after: unknown key",
        ),
        (
            "{gte: 100}",
            "{gt: 100}",
            "rules.yaml:11: rules[0] (deal-closed-thanks).when: "
            "unknown operator 'gt': did you mean gte?",
        ),
        (
            "deal.amount:",
            "deal.amont:",
            "rules.yaml:11: rules[0] (deal-closed-thanks).when: "
            "unknown event field 'deal.amont': did you mean deal.amount?",
        ),
        (
            'start: "09:00"',
            "start: 9:00",
            'rules.yaml:4: defaults.send_window.start: write times in quotes, e.g. "09:00"',
        ),
        ('end: "18:00"', 'end: "08:00"', "rules.yaml:4: defaults.send_window: end must be later"),
        ("[mon, tue,", "[mon, tues,", "rules.yaml:4: defaults.send_window.days.1: Input should"),
        ("on: deal.closed", "on: deal.won", "rules.yaml:8: rules[0] (deal-closed-thanks).on:"),
        (
            "name: feedback-thanks",
            "name: deal-closed-thanks",
            "rules.yaml:13: rules[1] (deal-closed-thanks).name: 'deal-closed-thanks' is already "
            "the name of rules[0]; names must be unique",
        ),
        (
            "name: deal-closed-thanks",
            "name: Deal Closed",
            "rules.yaml:7: rules[0] (Deal Closed)"
            ".name: rule names use lowercase letters, digits, - and _",
        ),
        (
            "max: 1, per: 7d",
            "max: 1, per: a week",
            "rules.yaml:5: defaults.frequency_cap.per: 'a week' is not a duration",
        ),
    ],
)
def test_each_mistake_is_reported_with_its_line(old: str, new: str, expected: str) -> None:
    assert old in VALID
    lines = problems(VALID.replace(old, new, 1))
    assert any(line.startswith(expected) for line in lines), lines


def test_every_problem_is_reported_at_once() -> None:
    text = VALID.replace("72h", "72 hours").replace("Europe/Berlin", "Mars/Base")
    assert len(problems(text)) == 2


def test_broken_yaml_names_the_line() -> None:
    lines = problems(VALID.replace("rules:\n", "rules:\n  - {name: x\n", 1))
    assert lines[0].startswith("rules.yaml:") and "not valid YAML" in lines[0]


def test_a_file_that_is_not_a_mapping() -> None:
    assert "expected a mapping" in problems("- just a list\n")[0]


def thankly(
    *args: str, env_extra: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": "/usr/bin:/bin",
        "THANKLY_TEMPLATES_DIR": str(TEMPLATES),
        "THANKLY_RULES_FILE": str(RULES_FILE),
        **(env_extra or {}),
    }
    return subprocess.run(
        [sys.executable, "-m", "worker.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_rules_check_cli_valid_file_prints_a_line_per_rule() -> None:
    # In this process: the command's output is the point; the test below starts a real one.
    env = {"THANKLY_TEMPLATES_DIR": str(TEMPLATES), "THANKLY_RULES_FILE": str(RULES_FILE)}
    result = thankly_in_process("rules", "check", env=env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0].endswith("4 rule(s), valid")
    assert lines[2] == (
        "deal-closed-thanks: deal.closed → deal_closed; after 24h to 72h; "
        "when deal.amount gte EUR 100 / USD 100 / CHF 100 / GBP 100 / PLN 400 / RUB 10000; "
        "cancelled by deal.reopened, deal.lost"
    )
    # Then the letters are checked against every example event: the last line says so.
    assert len(lines) == 2 + 4 + 1
    assert lines[-1].startswith("16 letters × ") and lines[-1].endswith(": no problems")


def test_rules_check_cli_bad_file_exits_non_zero_with_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "rules.yaml"
    bad.write_text(VALID.replace("24h}", "48 hours}"))
    result = thankly("rules", "check", str(bad))
    assert result.returncode == 1
    assert f"{bad}:13: rules[1] (feedback-thanks).delay:" in result.stderr
    assert "nothing was changed" in result.stderr


def test_the_demo_rules_are_valid_and_send_at_once() -> None:
    rules = load_rules(RULES_FILE.parent / "rules.demo.yaml", CATALOGUE)
    assert {str(r.delay) for r in rules.rules} == {"0s"}
    assert rules.defaults.send_window is None
