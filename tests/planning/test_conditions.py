"""`when:` conditions against event data."""

from __future__ import annotations

from typing import Any

import pytest

from worker.planning.conditions import first_failure
from worker.planning.rules_model import Condition

DATA = {
    "deal": {"amount": "5000.00", "currency": "EUR", "title": None},
    "contact": {"locale": "ru", "email": "a@example.org"},
    "feedback": {"rating": 9},
}


def check(path: str, condition: dict[str, Any]) -> str | None:
    return first_failure({path: Condition.model_validate(condition)}, DATA)


@pytest.mark.parametrize(
    ("path", "condition"),
    [
        ("deal.amount", {"gte": 100}),
        ("deal.amount", {"gte": "5000"}),
        ("deal.amount", {"lte": 5000}),
        ("deal.amount", {"gte": 100, "lte": 10000}),
        ("deal.amount", {"eq": 5000}),  # numbers compare as numbers
        ("deal.currency", {"eq": "EUR"}),
        ("deal.currency", {"ne": "USD"}),
        ("contact.locale", {"in": ["ru", "pl"]}),
        ("feedback.rating", {"in": [9, 10]}),
        ("deal.amount", {"exists": True}),
        ("deal.title", {"exists": False}),  # null counts as absent
        ("referral.referred_name", {"exists": False}),
    ],
)
def test_conditions_that_hold(path: str, condition: dict[str, Any]) -> None:
    assert check(path, condition) is None


@pytest.mark.parametrize(
    ("path", "condition", "reason"),
    [
        ("deal.amount", {"gte": 10000}, "deal.amount is 5000.00, needs gte 10000"),
        ("deal.amount", {"lte": 100}, "deal.amount is 5000.00, needs lte 100"),
        ("deal.currency", {"eq": "USD"}, "deal.currency is 'EUR', needs eq 'USD'"),
        ("deal.currency", {"ne": "EUR"}, "deal.currency is 'EUR', needs ne 'EUR'"),
        ("contact.locale", {"in": ["de"]}, "contact.locale is 'ru', needs in ['de']"),
        ("deal.title", {"exists": True}, "deal.title is missing, needs exists: true"),
        ("owner.name", {"eq": "Ivan"}, "owner.name is missing"),
        ("deal.currency", {"gte": 5}, "deal.currency is 'EUR', not a number (needs gte 5)"),
    ],
)
def test_conditions_that_fail_say_why(path: str, condition: dict[str, Any], reason: str) -> None:
    assert check(path, condition) == reason
