"""What a rules file says, as typed values: delays, send windows, conditions, rules.

Parsing the YAML text and reporting its problems with their lines is `rules.py`; these
models are what the rest of Thankly works with once a file is valid.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from worker.events import CANCEL_EVENT_TYPES, LETTER_EVENT_TYPES, EventData
from worker.planning.durations import format_duration, parse_duration

Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
DAYS: tuple[Day, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
OPERATORS = ("eq", "ne", "gte", "lte", "in", "exists")


# --- field types ---------------------------------------------------------------------------


# Longer than any thank-you should wait; longer still and adding it to an event time (up
# to 2100, see worker.events) or subtracting it from one overflows the calendar.
LONGEST = timedelta(days=365)


def _at_most_a_year(delta: timedelta) -> timedelta:
    if delta > LONGEST:
        raise ValueError(f"at most {format_duration(LONGEST)}, got {format_duration(delta)}")
    return delta


def _duration(value: object) -> timedelta:
    return _at_most_a_year(parse_duration(value))


def _clock_time(value: object) -> time:
    if isinstance(value, int) and not isinstance(value, bool):
        # YAML 1.1 reads an unquoted 09:00 as the base-60 number 540.
        raise ValueError(f'write times in quotes, e.g. "{value // 60:02d}:{value % 60:02d}"')
    try:
        hours, minutes = str(value).split(":")
        return time(int(hours), int(minutes))
    except ValueError:
        raise ValueError(f'{value!r} is not a time of day: write "HH:MM", e.g. "09:00"') from None


def _timezone(value: object) -> str:
    try:
        ZoneInfo(str(value))
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"{value!r} is not a time zone: use an IANA name such as Europe/Berlin"
        ) from None
    return str(value)


Duration = Annotated[timedelta, BeforeValidator(_duration)]
ClockTime = Annotated[time, BeforeValidator(_clock_time)]
TimeZoneName = Annotated[str, BeforeValidator(_timezone)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SendWindow(_Strict):
    days: Annotated[list[Day], Field(min_length=1)]
    start: ClockTime
    end: ClockTime
    # Letters moved to the window's opening are spread over this much time after it, so a
    # weekend's batch does not all go out at Monday 09:00 sharp. 0s: no spread.
    spread: Duration = timedelta(0)

    @model_validator(mode="after")
    def _ordered(self) -> SendWindow:
        if self.end <= self.start:
            raise ValueError("end must be later than start (windows across midnight: split them)")
        length = datetime.combine(date.min, self.end) - datetime.combine(date.min, self.start)
        if self.spread >= length:
            raise ValueError(
                f"spread must be shorter than the window ({format_duration(length)}), so every "
                "spread letter still goes out inside it"
            )
        return self


class FrequencyCap(_Strict):
    max: Annotated[int, Field(ge=1)]
    per: Duration


class Defaults(_Strict):
    timezone: TimeZoneName = "UTC"
    locale: str = "en"
    send_window: SendWindow | None = None
    frequency_cap: FrequencyCap | None = None
    # A thank-you for something weeks old reads strangely, and a backfill of old CRM
    # records must not become a mailing: older letter events plan nothing.
    max_event_age: Duration = timedelta(days=14)


@dataclass(frozen=True)
class Delay:
    min: timedelta
    max: timedelta

    @property
    def fixed(self) -> bool:
        return self.min == self.max

    def __str__(self) -> str:
        if self.fixed:
            return format_duration(self.min)
        return f"{format_duration(self.min)} to {format_duration(self.max)}"


def _delay(value: object) -> Delay:
    if isinstance(value, dict):
        unknown = set(value) - {"min", "max"}
        if unknown or set(value) != {"min", "max"}:
            raise ValueError("a delay window is {min: 24h, max: 72h}, with exactly those keys")
        low, high = _duration(value["min"]), _duration(value["max"])
        if high < low:
            raise ValueError("max must not be shorter than min")
        return Delay(low, high)
    if isinstance(value, Delay):
        return value
    fixed = _duration(value)
    return Delay(fixed, fixed)


def _condition_paths() -> dict[str, list[str]]:
    """`section.field` names a condition may test, taken from the event schema itself."""
    paths: dict[str, list[str]] = {}
    for section, info in EventData.model_fields.items():
        # Each section is `Model | None`; the model's fields are the ones we know.
        model = next(a for a in getattr(info.annotation, "__args__", ()) if a is not type(None))
        paths[section] = list(model.model_fields)
    return paths


CONDITION_PATHS = _condition_paths()


def _path(value: object) -> str:
    text = str(value)
    section, _, field = text.partition(".")
    known = [f"{s}.{f}" for s, fields in CONDITION_PATHS.items() for f in fields]
    if section in CONDITION_PATHS and field in CONDITION_PATHS[section]:
        return text
    close = difflib.get_close_matches(text, known, n=1)
    hint = f"did you mean {close[0]}?" if close else "e.g. deal.amount or contact.locale"
    raise ValueError(f"unknown event field {text!r}: {hint}")


def _number(value: object) -> Decimal:
    try:
        if isinstance(value, bool):
            raise InvalidOperation
        return Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"{value!r} is not a number") from None


class Condition(_Strict):
    """`{gte: 100}`; several operators on one field must all hold."""

    eq: Any = None
    ne: Any = None
    gte: Annotated[Decimal, BeforeValidator(_number)] | None = None
    lte: Annotated[Decimal, BeforeValidator(_number)] | None = None
    in_: list[Any] | None = Field(default=None, alias="in")
    exists: bool | None = None

    @model_validator(mode="before")
    @classmethod
    def _operators(cls, value: object) -> object:
        if not isinstance(value, dict) or not value:
            raise ValueError(
                "a condition maps an operator to a value, e.g. {gte: 100}; "
                f"operators: {', '.join(OPERATORS)}"
            )
        for op in value:
            if op not in OPERATORS:
                close = difflib.get_close_matches(str(op), OPERATORS, n=1)
                hint = f"did you mean {close[0]}?" if close else f"use {', '.join(OPERATORS)}"
                raise ValueError(f"unknown operator {op!r}: {hint}")
        return value


def _conditions(value: object) -> dict[str, Condition]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError("when: maps event fields to conditions, e.g. {deal.amount: {gte: 100}}")
    return {_path(k): Condition.model_validate(v) for k, v in value.items()}


class Rule(_Strict):
    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=128)]
    on: Literal["deal.closed", "feedback.logged", "referral.made"]
    letter: Annotated[str, Field(min_length=1)]
    delay: Annotated[Delay, BeforeValidator(_delay)]
    when: Annotated[dict[str, Condition], BeforeValidator(_conditions)] = {}
    cancel_on: list[Literal["deal.reopened", "deal.lost"]] = []


class RulesFile(_Strict):
    defaults: Defaults = Defaults()
    rules: list[Rule]


assert {"deal.closed", "feedback.logged", "referral.made"} == LETTER_EVENT_TYPES
assert {"deal.reopened", "deal.lost"} == CANCEL_EVENT_TYPES


# --- loading with line numbers -------------------------------------------------------------


@dataclass(frozen=True)
class RuleSet:
    defaults: Defaults
    rules: tuple[Rule, ...]
    source: Path

    def for_event(self, event_type: str) -> list[Rule]:
        return [r for r in self.rules if r.on == event_type]

    def rule(self, name: str) -> Rule | None:
        return next((r for r in self.rules if r.name == name), None)

    def cancelled_by(self, event_type: str) -> list[Rule]:
        return [r for r in self.rules if event_type in r.cancel_on]
