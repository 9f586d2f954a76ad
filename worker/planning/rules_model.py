"""What a rules file says, as typed values: delays, send windows, conditions, rules.

Parsing the YAML text and reporting its problems with their lines is `rules.py`; these
models are what the rest of Thankly works with once a file is valid.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

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


class FeedbackScale(_Strict):
    """How ratings are read: 0 to `max`, and `negative` or lower is a complaint (the
    default 0-10 with 6 or lower follows the NPS convention; a 1-5 scale is {max: 5,
    negative: 2})."""

    max: Annotated[int, Field(ge=1, le=100)] = 10
    negative: Annotated[int, Field(ge=0)] = 6

    @model_validator(mode="after")
    def _inside(self) -> FeedbackScale:
        if self.negative >= self.max:
            raise ValueError(f"negative must be below max ({self.max})")
        return self

    def sentiment(self, rating: object) -> str:
        """`negative`, `positive` or `unrated`: what `feedback.sentiment` holds."""
        if rating is None or isinstance(rating, bool):
            return "unrated"
        try:
            return "negative" if Decimal(str(rating)) <= self.negative else "positive"
        except InvalidOperation:
            return "unrated"


class Defaults(_Strict):
    timezone: TimeZoneName = "UTC"
    locale: str = "en"
    send_window: SendWindow | None = None
    frequency_cap: FrequencyCap | None = None
    # A thank-you for something weeks old reads strangely, and a backfill of old CRM
    # records must not become a mailing: older letter events plan nothing.
    max_event_age: Duration = timedelta(days=14)
    feedback_scale: FeedbackScale = FeedbackScale()


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


# Worked out from the event rather than sent in it (see `event_facts`).
DERIVED_PATHS = {"feedback": ["sentiment"]}


def _condition_paths() -> dict[str, list[str]]:
    """`section.field` names a condition may test, taken from the event schema itself."""
    paths: dict[str, list[str]] = {}
    for section, info in EventData.model_fields.items():
        # Each section is `Model | None`; the model's fields are the ones we know.
        model = next(a for a in getattr(info.annotation, "__args__", ()) if a is not type(None))
        if isinstance(model, type) and issubclass(model, BaseModel):
            paths[section] = list(model.model_fields) + DERIVED_PATHS.get(section, [])
    return paths


CONDITION_PATHS = _condition_paths()
# `custom.<key>`: the CRM's own fields (`data.custom`), whatever their names.
CUSTOM_PATH = re.compile(r"^custom\.[A-Za-z_][A-Za-z0-9_]{0,63}$")


def _path(value: object) -> str:
    text = str(value)
    section, _, field = text.partition(".")
    known = [f"{s}.{f}" for s, fields in CONDITION_PATHS.items() for f in fields]
    if (section in CONDITION_PATHS and field in CONDITION_PATHS[section]) or CUSTOM_PATH.match(
        text
    ):
        return text
    close = difflib.get_close_matches(text, known, n=1)
    hint = f"did you mean {close[0]}?" if close else "e.g. deal.amount or contact.locale"
    raise ValueError(f"unknown event field {text!r}: {hint}")


def _one_number(value: object) -> Decimal:
    try:
        if isinstance(value, bool):
            raise InvalidOperation
        return Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"{value!r} is not a number") from None


def _number(value: object) -> Decimal | dict[str, Decimal]:
    """A bound: a number, or one per currency (`{EUR: 1000, PLN: 4000}`), since 100 means
    something else in every currency a deal may carry."""
    if isinstance(value, dict):
        if not value:
            raise ValueError("a bound per currency names at least one, e.g. {EUR: 1000}")
        bounds = {}
        for code, bound in value.items():
            if not re.fullmatch(r"[A-Za-z]{3}", str(code)):
                raise ValueError(f"{code!r} is not a currency code such as EUR or PLN")
            bounds[str(code).upper()] = _one_number(bound)
        return bounds
    return _one_number(value)


Bound = Annotated[Decimal | dict[str, Decimal], BeforeValidator(_number)]


class Condition(_Strict):
    """`{gte: 100}`; several operators on one field must all hold."""

    eq: Any = None
    ne: Any = None
    gte: Bound | None = None
    lte: Bound | None = None
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


def _conditions_checked(value: dict[str, Condition]) -> dict[str, Condition]:
    for path, condition in value.items():
        per_currency = any(isinstance(b, dict) for b in (condition.gte, condition.lte))
        if per_currency and path != "deal.amount":
            raise ValueError(f"{path}: a bound per currency only applies to deal.amount")
    return value


LocaleTag = Annotated[str, Field(pattern=r"^[a-z]{2,3}(-[a-z0-9]{2,8})*$")]


def _per_locale(value: object) -> object:
    """A text or URL for every locale (`"Book a call"`), or one per locale (`{en: …}`)."""
    if isinstance(value, str):
        return {"*": value}
    if isinstance(value, dict):
        return {str(k).replace("_", "-").lower(): v for k, v in value.items()}
    return value


PerLocale = Annotated[
    dict[str, Annotated[str, Field(min_length=1, max_length=500)]], BeforeValidator(_per_locale)
]


class NextStep(_Strict):
    """The one clickable thing a letter offers: a page and what its button says, in the
    letter's locale ("*" for every locale without its own)."""

    url: PerLocale
    label: PerLocale

    @model_validator(mode="after")
    def _links(self) -> NextStep:
        for locale, url in self.url.items():
            if not re.match(r"^(https?://[^\s<>\"']+|mailto:[^\s<>\"']+@[^\s<>\"']+)$", url):
                raise ValueError(f"url {url!r} ({locale}) must be an http(s) or mailto: link")
        for key in [*self.url, *self.label]:
            if key != "*" and not re.fullmatch(r"[a-z]{2,3}(-[a-z0-9]{2,8})*", key):
                raise ValueError(f"{key!r} is not a locale such as en or de")
        return self

    def pick(self, locale: str) -> tuple[str | None, str | None]:
        """(url, label) for `locale`: its own, its language's, else the "*" one."""
        return _for_locale(self.url, locale), _for_locale(self.label, locale)


def _for_locale(values: dict[str, str], locale: str) -> str | None:
    tag = locale.replace("_", "-").lower()
    for key in (tag, tag.split("-", 1)[0], "*"):
        if key in values:
            return values[key]
    return None


HOLDOUT = "holdout"  # the arm that gets no letter
ArmName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=64)]


def _as_share(value: object) -> float | None:
    """`10%` → 0.1; None for anything not written as a percentage. A bare number is not
    one: 0.1 and 10 would each look right to someone."""
    text = str(value).strip()
    if not isinstance(value, str) or not text.endswith("%"):
        return None
    try:
        return float(text[:-1]) / 100
    except ValueError:
        return None


def _percent(value: object) -> float:
    share = _as_share(value)
    if share is None or not 0 <= share < 1:
        raise ValueError(f"{value!r}: write a share as a percentage below 100%, e.g. 10%")
    return share


def _lift(value: object) -> float:
    """A relative lift, which may be 100% (a doubling) or more."""
    lift = _as_share(value)
    if lift is None or not 0 < lift <= 100:
        raise ValueError(f"{value!r}: write the lift as a percentage above 0%, e.g. 20%")
    return lift


Percent = Annotated[float, BeforeValidator(_percent)]
Lift = Annotated[float, BeforeValidator(_lift)]


class Arm(_Strict):
    """What one arm sends: a letter folder, and optionally the `variant` its templates read
    (so `short` and `long` can share one folder)."""

    letter: Annotated[str, Field(min_length=1)]
    variant: ArmName | None = None


def _arm(value: object) -> object:
    return {"letter": value} if isinstance(value, str) else value


class Experiment(_Strict):
    """Letters of a rule split between arms, and a holdout that gets none, to measure what
    the letters do: conversions are later `convert_on` events of the same contact within
    `window` of the letter's due time, in every arm alike."""

    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=128)]
    variants: Annotated[dict[ArmName, Annotated[Arm, BeforeValidator(_arm)]], Field(min_length=1)]
    weights: dict[str, Annotated[int, Field(ge=1, le=1_000_000)]] | None = None
    holdout: Percent = 0.0
    window: Duration = timedelta(days=90)
    convert_on: Annotated[list[Literal["deal.closed", "referral.made"]], Field(min_length=1)] = [
        "deal.closed"
    ]
    # The relative lift the test is sized to detect: the report's "letters needed".
    min_effect: Lift = 0.2
    # Closes the experiment: every later letter is this arm's, outside the experiment.
    winner: str | None = None
    # Write a "held out" note to the CRM when a holdout letter would have gone.
    note_held_out: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> Experiment:
        arms = list(self.variants)
        if HOLDOUT in arms:
            raise ValueError(f"{HOLDOUT!r} names the arm that gets no letter; use `holdout: 10%`")
        if self.weights is not None and set(self.weights) != set(arms):
            raise ValueError(
                f"weights must name exactly the variants ({', '.join(arms)}), "
                f"got {', '.join(self.weights) or 'none'}"
            )
        if self.winner is not None and self.winner not in arms:
            raise ValueError(f"winner {self.winner!r} is not a variant ({', '.join(arms)})")
        if len(arms) == 1 and self.holdout == 0:
            raise ValueError(
                "one variant and no holdout compares nothing: add a variant or a holdout"
            )
        return self

    @property
    def arms(self) -> list[str]:
        """Every arm, the holdout last when there is one."""
        return list(self.variants) + ([HOLDOUT] if self.holdout > 0 else [])

    @property
    def closed(self) -> bool:
        return self.winner is not None

    def weight(self, arm: str) -> int:
        return self.weights[arm] if self.weights is not None else 1


class Rule(_Strict):
    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=128)]
    on: Literal["deal.closed", "feedback.logged", "referral.made"]
    letter: Annotated[str, Field(min_length=1)]
    delay: Annotated[Delay, BeforeValidator(_delay)]
    when: Annotated[
        dict[str, Condition], BeforeValidator(_conditions), AfterValidator(_conditions_checked)
    ] = {}
    cancel_on: list[Literal["deal.reopened", "deal.lost"]] = []
    # `exempt`: the frequency cap neither holds this rule's letters back nor counts them
    # (an answer to a complaint must go out whatever thank-you went earlier that week).
    cap: Literal["exempt"] | None = None
    next_step: NextStep | None = None
    # Who takes a complaint over has this long to get back to the customer; the letter
    # names the day (`follow_up_by`).
    follow_up: Duration | None = None
    # A letter's templates may read it to pick a shorter or longer text (`variant`).
    variant: ArmName | None = None
    # Splits this rule's letters between variants and a holdout (worker/experiments).
    experiment: Experiment | None = None

    @property
    def cap_exempt(self) -> bool:
        return self.cap == "exempt"

    def for_arm(self, arm: str | None) -> Rule:
        """The rule as a letter of `arm` is written: the variant's own `variant` when it
        names one (the letter folder is on the letter row already)."""
        chosen = self.experiment.variants.get(arm or "") if self.experiment else None
        if chosen is None or chosen.variant is None:
            return self
        return self.model_copy(update={"variant": chosen.variant})


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

    @property
    def cap_exempt(self) -> frozenset[str]:
        """Names of the rules the frequency cap leaves alone."""
        return frozenset(r.name for r in self.rules if r.cap_exempt)

    def cancelled_by(self, event_type: str) -> list[Rule]:
        return [r for r in self.rules if event_type in r.cancel_on]

    @property
    def experiments(self) -> dict[str, tuple[Rule, Experiment]]:
        """Experiments in force by name, with the rule that carries each."""
        return {r.experiment.name: (r, r.experiment) for r in self.rules if r.experiment}
