"""A contact's arm: stable, as the weights say, independent between experiments, and kept
when the weights change."""

from __future__ import annotations

from collections import Counter
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from tests.experiments.conftest import MakeRuntime, deal, rewrite_rules
from tests.helpers import all_letters, ingest_doc
from worker.experiments.assignment import BUCKETS, arm_of_bucket, bucket, choose_arm
from worker.planning.rules_model import HOLDOUT, Experiment

# The 0.1% critical values of chi-square: a correct hash exceeds them once in a thousand
# draws of contacts, a biased split (one bucket off, weights misread) far more often.
CHI2_999 = {1: 10.83, 2: 13.82, 3: 16.27}


def experiment(**fields: object) -> Experiment:
    config: dict[str, object] = {"name": "deal-thanks-q1", "variants": {"a": "x", "b": "y"}}
    return Experiment.model_validate(config | fields)


def chi_square(observed: Counter[Any], expected: dict[Any, float]) -> float:
    return sum((observed[arm] - e) ** 2 / e for arm, e in expected.items())


def test_arms_follow_the_weights_and_the_holdout_share_over_100000_contacts() -> None:
    test = experiment(
        variants={"a": "x", "b": "y", "c": "z"}, weights={"a": 50, "b": 30, "c": 20}, holdout="10%"
    )
    contacts = [f"customer{n}@example.org" for n in range(100_000)]
    observed = Counter(choose_arm(test, c) for c in contacts)
    shares = {HOLDOUT: 0.10, "a": 0.45, "b": 0.27, "c": 0.18}
    expected = {arm: share * len(contacts) for arm, share in shares.items()}
    assert set(observed) == set(shares)
    assert chi_square(observed, expected) < CHI2_999[3]


def test_equal_weights_by_default_and_no_holdout_arm_without_a_holdout() -> None:
    test = experiment()
    observed = Counter(choose_arm(test, f"c{n}@example.org") for n in range(100_000))
    assert set(observed) == {"a", "b"}
    assert chi_square(observed, {"a": 50_000, "b": 50_000}) < CHI2_999[1]


def test_being_held_out_of_one_experiment_says_nothing_about_the_next() -> None:
    first, second = experiment(holdout="50%"), experiment(name="deal-thanks-q2", holdout="50%")
    pairs = Counter(
        (choose_arm(first, c) == HOLDOUT, choose_arm(second, c) == HOLDOUT)
        for c in (f"c{n}@example.org" for n in range(40_000))
    )
    # Independent halves: each combination a quarter (1 degree of freedom: a 2x2 table).
    assert chi_square(pairs, dict.fromkeys(pairs, 10_000.0)) < CHI2_999[3]


@given(st.emails())
def test_a_contact_gets_the_same_arm_every_time(contact: str) -> None:
    test = experiment(holdout="10%")
    assert len({choose_arm(test, contact) for _ in range(3)}) == 1
    assert 0 <= bucket(test.name, contact) < BUCKETS


def test_every_bucket_has_an_arm_and_the_split_points_are_where_the_weights_put_them() -> None:
    test = experiment(weights={"a": 1, "b": 3}, holdout="20%")
    arms = [arm_of_bucket(test, n) for n in range(BUCKETS)]
    assert Counter(arms) == {HOLDOUT: 2_000, "a": 2_000, "b": 6_000}
    # Contiguous ranges: a weight change moves only the contacts at a boundary.
    assert arms == sorted(arms, key=[HOLDOUT, "a", "b"].index)


def test_a_stored_arm_wins_over_the_hash_and_a_winner_over_both() -> None:
    test = experiment(holdout="10%")
    contact = next(f"c{n}@x.org" for n in range(100) if choose_arm(test, f"c{n}@x.org") == "a")
    assert choose_arm(test, contact, stored="b") == "b"
    assert choose_arm(test, contact, stored="gone") == "a"  # a removed arm is reassigned
    closed = experiment(holdout="10%", winner="b")
    assert choose_arm(closed, contact, stored=HOLDOUT) == "b"


def test_changing_the_weights_moves_no_contact_already_assigned(make_runtime: MakeRuntime) -> None:
    runtime = make_runtime()
    first = {f"early{n}@example.org": n for n in range(40)}
    for email, n in first.items():
        ingest_doc(runtime, deal(email, f"d-{n}"), f"evt-{n}")
    before = {x.contact_email: x.arm for x in all_letters(runtime)}
    assert set(before.values()) == {"a", "b", HOLDOUT}
    # Ops now send nearly everyone b, and hold out nobody.
    rewrite_rules(
        runtime,
        "      name: deal-thanks-q1\n"
        "      variants: {a: deal_closed, b: {letter: deal_closed, variant: short}}\n"
        "      weights: {a: 1, b: 99}\n",
    )
    for email, n in first.items():  # the same contacts close another deal
        ingest_doc(runtime, deal(email, f"d2-{n}"), f"evt2-{n}")
    for n in range(40):  # and new contacts arrive
        ingest_doc(runtime, deal(f"late{n}@example.org", f"d3-{n}"), f"evt3-{n}")
    letters = all_letters(runtime)
    again = [x for x in letters if x.deal_id and x.deal_id.startswith("d2-")]
    assert {x.contact_email: x.arm for x in again} == before
    # The holdout share went to 0%: the contacts held out before stay held out.
    assert all(x.status == "held_out" for x in again if x.arm == HOLDOUT)
    late = Counter(x.arm for x in letters if x.deal_id and x.deal_id.startswith("d3-"))
    assert late["b"] >= 36 and late[HOLDOUT] == 0


def test_contacts_of_a_removed_variant_get_a_new_arm_and_keep_it(make_runtime: MakeRuntime) -> None:
    runtime = make_runtime(
        "      name: deal-thanks-q1\n"
        "      variants: {a: deal_closed, b: deal_closed, c: deal_closed}\n"
    )
    emails = [f"c{n}@example.org" for n in range(30)]
    for n, email in enumerate(emails):
        ingest_doc(runtime, deal(email, f"d-{n}"), f"e-{n}")
    in_c = [x.contact_email for x in all_letters(runtime) if x.arm == "c"]
    assert in_c
    rewrite_rules(
        runtime, "      name: deal-thanks-q1\n      variants: {a: deal_closed, b: deal_closed}\n"
    )
    for n, email in enumerate(in_c):
        ingest_doc(runtime, deal(email, f"d2-{n}"), f"e2-{n}")
    # Weighted back to a and b, and that new arm is kept from then on.
    rewrite_rules(
        runtime,
        "      name: deal-thanks-q1\n"
        "      variants: {a: deal_closed, b: deal_closed}\n"
        "      weights: {a: 1, b: 99}\n",
    )
    for n, email in enumerate(in_c):
        ingest_doc(runtime, deal(email, f"d3-{n}"), f"e3-{n}")
    letters = all_letters(runtime)
    second = {x.contact_email: x.arm for x in letters if x.deal_id and x.deal_id.startswith("d2-")}
    third = {x.contact_email: x.arm for x in letters if x.deal_id and x.deal_id.startswith("d3-")}
    assert set(second.values()) <= {"a", "b"} and second == third
