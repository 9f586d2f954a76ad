"""`experiment:` in the rules file: what it accepts, and every mistake named at its line."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from textwrap import dedent, indent

import pytest

from tests.conftest import TEMPLATES
from worker.letters.catalogue import Catalogue
from worker.planning.rules import RulesError, parse_rules
from worker.planning.rules_model import HOLDOUT, RuleSet

CATALOGUE = Catalogue.scan(TEMPLATES)


def rules(experiment: str, second: str = "") -> str:
    return (
        dedent(
            """\
            rules:
              - name: deal-closed-thanks
                on: deal.closed
                letter: deal_closed
                delay: 24h
                experiment:
            """
        )
        + indent(dedent(experiment), " " * 6)
        + second
    )


def parse(text: str) -> RuleSet:
    return parse_rules(text, Path("rules.yaml"), CATALOGUE)


def problems(text: str) -> list[str]:
    with pytest.raises(RulesError) as info:
        parse(text)
    return info.value.lines()


def test_a_full_experiment_reads_as_written() -> None:
    parsed = parse(
        rules(
            """\
            name: deal-thanks-q1
            variants: {a: deal_closed, b: {letter: deal_closed, variant: short}}
            weights: {a: 30, b: 70}
            holdout: 12.5%
            window: 60d
            convert_on: [deal.closed, referral.made]
            min_effect: 15%
            note_held_out: true
            """
        )
    )
    rule, test = parsed.experiments["deal-thanks-q1"]
    assert rule.name == "deal-closed-thanks"
    assert test.variants["a"].letter == "deal_closed" and test.variants["a"].variant is None
    assert test.variants["b"].variant == "short"
    assert (test.weight("a"), test.weight("b")) == (30, 70)
    assert test.holdout == pytest.approx(0.125)
    assert test.window == timedelta(days=60)
    assert test.convert_on == ["deal.closed", "referral.made"]
    assert test.min_effect == pytest.approx(0.15)
    assert test.arms == ["a", "b", HOLDOUT]
    assert not test.closed and test.note_held_out
    # The arm's own variant shapes its letter; the rule itself is unchanged.
    assert rule.for_arm("b").variant == "short"
    assert rule.for_arm("a") is rule and rule.for_arm(HOLDOUT) is rule


def test_defaults_are_a_90_day_window_on_deal_closed_and_no_holdout() -> None:
    _, test = parse(rules("name: t\nvariants: {a: deal_closed, b: feedback_logged}\n")).experiments[
        "t"
    ]
    assert test.window == timedelta(days=90)
    assert test.convert_on == ["deal.closed"]
    assert test.holdout == 0 and test.arms == ["a", "b"]
    assert test.min_effect == pytest.approx(0.2) and not test.note_held_out


@pytest.mark.parametrize(
    ("experiment", "line", "message"),
    [
        (
            "name: t\nvariants: {a: deal_closed}\nholdout: 10\n",
            9,
            "10: write a share as a percentage below 100%, e.g. 10%",
        ),
        (
            "name: t\nvariants: {a: deal_closed}\nholdout: 100%\n",
            9,
            "write a share as a percentage below 100%",
        ),
        (
            "name: t\nvariants: {a: deal_closed, b: deal_closed}\nweights: {a: 1, c: 2}\n",
            6,
            "weights must name exactly the variants (a, b), got a, c",
        ),
        (
            "name: t\nvariants: {a: deal_closed, b: deal_closed}\nwinner: c\n",
            6,
            "winner 'c' is not a variant (a, b)",
        ),
        (
            "name: t\nvariants: {a: deal_closed, holdout: deal_closed}\n",
            6,
            "'holdout' names the arm that gets no letter; use `holdout: 10%`",
        ),
        (
            "name: t\nvariants: {a: deal_closed}\n",
            6,
            "one variant and no holdout compares nothing",
        ),
        (
            "name: t\nvariants: {a: deal_closed}\nholdout: 10%\nconvert_on: [deal.lost]\n",
            10,
            "convert_on.0: Input should be 'deal.closed' or 'referral.made'",
        ),
    ],
)
def test_mistakes_are_named_with_their_line(experiment: str, line: int, message: str) -> None:
    found = problems(rules(experiment))
    assert any(f"rules.yaml:{line}:" in p and message in p for p in found), found


def test_a_variant_naming_a_letter_that_does_not_exist_is_refused_at_its_line() -> None:
    found = problems(rules("name: t\nvariants:\n  a: deal_closed\n  b: deal_closd\n"))
    assert found == [
        "rules.yaml:10: rules[0] (deal-closed-thanks).experiment.variants.b: "
        "no letter 'deal_closd' in the templates folder; did you mean deal_closed?"
    ]


def test_two_rules_cannot_share_an_experiment() -> None:
    second = (
        "  - name: referral-thanks\n    on: referral.made\n    letter: referral_made\n"
        "    delay: 24h\n    experiment: {name: t, variants: {a: referral_made}, holdout: 5%}\n"
    )
    found = problems(rules("name: t\nvariants: {a: deal_closed}\nholdout: 5%\n", second))
    assert any(
        "rules.yaml:14:" in p and "experiment 't' is already run by rules[0]" in p for p in found
    ), found
