"""`when:` conditions of a rule, evaluated against an event's data."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from worker.events import GenericEvent
from worker.planning.rules_model import Condition, FeedbackScale

_MISSING = object()


def event_facts(event: GenericEvent, scale: FeedbackScale) -> dict[str, Any]:
    """What conditions test: the event's data, plus `feedback.sentiment` read off the
    rating on the rules' scale (so a rule says `{eq: negative}` whatever the CRM's scale)."""
    data: dict[str, Any] = event.model_dump(mode="json")["data"]
    if event.type == "feedback.logged" or data.get("feedback"):
        feedback = dict(data.get("feedback") or {})
        feedback["sentiment"] = scale.sentiment(feedback.get("rating"))
        data["feedback"] = feedback
    return data


def lookup(data: dict[str, Any], path: str) -> Any:
    value: Any = data
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return _MISSING
        value = value[part]
    return value


def _number(value: Any) -> Decimal | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


def _equal(actual: Any, expected: Any) -> bool:
    a, b = _number(actual), _number(expected)
    if a is not None and b is not None:
        return a == b  # "5000.00" in the event equals 5000 in the rules file
    return bool(actual == expected)


def failure(condition: Condition, path: str, data: dict[str, Any]) -> str | None:
    """None when the condition holds, else a sentence saying why it does not."""
    value = lookup(data, path)
    present = value is not _MISSING and value is not None and value != ""
    shown = repr(value) if present else "missing"
    if condition.exists is not None and present != condition.exists:
        return f"{path} is {shown}, needs exists: {str(condition.exists).lower()}"
    checks = condition.model_fields_set - {"exists"}
    if checks and not present:
        return f"{path} is missing"
    if "eq" in checks and not _equal(value, condition.eq):
        return f"{path} is {shown}, needs eq {condition.eq!r}"
    if "ne" in checks and _equal(value, condition.ne):
        return f"{path} is {shown}, needs ne {condition.ne!r}"
    if "in_" in checks and not any(_equal(value, item) for item in condition.in_ or []):
        return f"{path} is {shown}, needs in {condition.in_!r}"
    for op, given in (("gte", condition.gte), ("lte", condition.lte)):
        if op not in checks or given is None:
            continue
        if isinstance(given, dict):  # one bound per currency: the deal's own
            currency = str(lookup(data, "deal.currency") or "").upper()
            if currency not in given:
                known = ", ".join(sorted(given))
                return f"deal.currency is {currency or 'missing'}, needs one of {known} for {op}"
            bound = given[currency]
        else:
            bound = given
        number = _number(value)
        if number is None:
            return f"{path} is {shown}, not a number (needs {op} {bound})"
        if (op == "gte" and number < bound) or (op == "lte" and number > bound):
            return f"{path} is {value}, needs {op} {bound}"
    return None


def first_failure(conditions: dict[str, Condition], data: dict[str, Any]) -> str | None:
    for path, condition in conditions.items():
        reason = failure(condition, path, data)
        if reason:
            return reason
    return None
