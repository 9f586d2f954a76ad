"""The rules file (`config/rules.yaml`): which event gets which letter, and when.

Loading gives either a valid RuleSet or every problem at once, each with the file line and
what to write instead. `RulesStore` reloads the file when it changes and keeps the last
valid rules in force when an edit is broken.
"""

from __future__ import annotations

import difflib
import logging
import threading
from dataclasses import dataclass
from datetime import time, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from worker.events import CANCEL_EVENT_TYPES, LETTER_EVENT_TYPES, EventData
from worker.letters.catalogue import Catalogue, normalise_locale
from worker.planning.durations import format_duration, parse_duration

log = logging.getLogger(__name__)

Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
DAYS: tuple[Day, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
OPERATORS = ("eq", "ne", "gte", "lte", "in", "exists")


# --- YAML: 1.1 quirks that bite rules files ----------------------------------------------


class _RulesLoader(yaml.SafeLoader):
    """SafeLoader without YAML 1.1's `on/off/yes/no` booleans (`on:` is our key)."""


_RulesLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_RulesLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    __import__("re").compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)


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

    @model_validator(mode="after")
    def _ordered(self) -> SendWindow:
        if self.end <= self.start:
            raise ValueError("end must be later than start (windows across midnight: split them)")
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
class Problem:
    line: int | None
    where: str
    message: str


class RulesError(Exception):
    def __init__(self, path: Path, problems: list[Problem]) -> None:
        self.path = path
        self.problems = problems
        super().__init__("\n".join(self.lines()))

    def lines(self) -> list[str]:
        out = []
        for p in self.problems:
            place = f"{self.path}:{p.line}" if p.line else str(self.path)
            out.append(f"{place}: {p.where + ': ' if p.where else ''}{p.message}")
        return out


def _line_of(node: yaml.Node | None, loc: tuple[int | str, ...]) -> int | None:
    """The line of the deepest YAML node along a pydantic error location."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == str(part) or (part == "in_" and key.value == "in"):
                    line = key.start_mark.line + 1
                    node = value
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                return line
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def _where(loc: tuple[int | str, ...], document: Any) -> str:
    parts: list[str] = []
    for i, part in enumerate(loc):
        if isinstance(part, int) and loc[i - 1 : i] == ("rules",):
            try:
                parts[-1] = f"rules[{part}] ({document['rules'][part]['name']})"
                continue
            except (KeyError, TypeError, IndexError):
                pass
            parts[-1] = f"rules[{part}]"
        else:
            parts.append("in" if part == "in_" else str(part))
    return ".".join(parts)


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


def parse_rules(text: str, path: Path, catalogue: Catalogue) -> RuleSet:
    """Validate rules text; RulesError lists every problem with its line."""
    try:
        root = yaml.compose(text, Loader=_RulesLoader)
        document = yaml.load(text, Loader=_RulesLoader)  # noqa: S506 - SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise RulesError(path, [Problem(line, "", f"not valid YAML: {exc}")]) from None
    if not isinstance(document, dict):
        raise RulesError(path, [Problem(1, "", "expected a mapping with `defaults:` and `rules:`")])

    try:
        parsed = RulesFile.model_validate(document)
    except ValidationError as exc:
        problems = [
            Problem(
                _line_of(root, tuple(err["loc"])),
                _where(tuple(err["loc"]), document),
                _message(err),
            )
            for err in exc.errors(include_url=False)
        ]
        raise RulesError(path, problems) from None

    problems = _check_against_catalogue(parsed, catalogue, root, document)
    if problems:
        raise RulesError(path, problems)
    return RuleSet(parsed.defaults, tuple(parsed.rules), path)


def _message(err: Any) -> str:
    message = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        return "unknown key (check the spelling; see README, 'Tuning delay rules')"
    if err["type"] == "missing":
        return "required"
    if err["type"] == "string_pattern_mismatch" and err["loc"][-1] == "name":
        return "rule names use lowercase letters, digits, - and _ (e.g. deal-closed-thanks)"
    return message


def _check_against_catalogue(
    parsed: RulesFile, catalogue: Catalogue, root: yaml.Node | None, document: Any
) -> list[Problem]:
    problems: list[Problem] = []

    def add(loc: tuple[int | str, ...], message: str) -> None:
        problems.append(Problem(_line_of(root, loc), _where(loc, document), message))

    seen: dict[str, int] = {}
    for index, rule in enumerate(parsed.rules):
        if rule.name in seen:
            add(
                ("rules", index, "name"),
                f"{rule.name!r} is already the name of rules[{seen[rule.name]}]; "
                "names must be unique",
            )
        seen.setdefault(rule.name, index)
        if not catalogue.has(rule.letter):
            known = sorted(catalogue.letters)
            close = difflib.get_close_matches(rule.letter, known, n=1)
            hint = (
                f"did you mean {close[0]}?"
                if close
                else f"known letters: {', '.join(known) or 'none'}"
            )
            add(
                ("rules", index, "letter"),
                f"no letter {rule.letter!r} in the templates folder; {hint}",
            )
        elif not catalogue.has(rule.letter, parsed.defaults.locale):
            add(
                ("rules", index, "letter"),
                f"{rule.letter} has no {parsed.defaults.locale!r} version, the default locale "
                "every other locale falls back to (it has: "
                f"{', '.join(sorted(catalogue.letters[rule.letter]))})",
            )
    if not any(
        normalise_locale(parsed.defaults.locale) in locales
        for locales in catalogue.letters.values()
    ):
        add(("defaults", "locale"), f"no letter exists in locale {parsed.defaults.locale!r}")
    return problems


def load_rules(path: Path, catalogue: Catalogue) -> RuleSet:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RulesError(path, [Problem(None, "", f"cannot read: {exc.strerror}")]) from None
    return parse_rules(text, path, catalogue)


class RulesStore:
    """The rules in force. Re-reads the file when it changes; a broken edit is refused and
    logged, and the last valid rules stay in force."""

    def __init__(self, path: Path, templates_dir: Path) -> None:
        self._path = path
        self._templates_dir = templates_dir
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._current: RuleSet | None = None
        self.last_error: RulesError | None = None

    def _file_stamp(self) -> tuple[int, int] | None:
        try:
            stat = self._path.stat()
        except OSError:
            return None
        return (stat.st_mtime_ns, stat.st_size)

    def get(self) -> RuleSet:
        stamp = self._file_stamp()
        with self._lock:
            if self._current is not None and stamp == self._stamp:
                return self._current
            try:
                rules = load_rules(self._path, Catalogue.scan(self._templates_dir))
            except RulesError as exc:
                self._stamp = stamp  # do not re-parse the same broken file on every event
                self.last_error = exc
                if self._current is None:
                    raise
                log.error("rules file edit REFUSED, still using the previous rules:\n%s", exc)
                return self._current
            if self._current is not None:
                log.warning("rules reloaded from %s (%d rules)", self._path, len(rules.rules))
            self._current, self._stamp, self.last_error = rules, stamp, None
            return rules

    @property
    def catalogue(self) -> Catalogue:
        return Catalogue.scan(self._templates_dir)
