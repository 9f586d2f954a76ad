"""The generic event format (docs/events.md, docs/event.schema.json) and its validation.

Only what a letter cannot do without is required; everything else is optional so that a
sparse CRM record still produces a letter that reads well.
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from email_validator import EmailNotValidError, validate_email
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

EventType = Literal[
    "deal.closed",
    "feedback.logged",
    "referral.made",
    "deal.reopened",
    "deal.lost",
    "contact.unsubscribed",
]
LETTER_EVENT_TYPES = frozenset({"deal.closed", "feedback.logged", "referral.made"})
CANCEL_EVENT_TYPES = frozenset({"deal.reopened", "deal.lost"})


def normalise_address(value: str) -> str:
    """The one form an address is stored and looked up in: email-validator's normalised
    form, lower-cased (so equality on the indexed column finds it: no `lower()` in
    queries). Raises ValueError."""
    try:
        normalized = validate_email(value.strip(), check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise ValueError(f"not a valid email address: {exc}") from None
    local = normalized.rpartition("@")[0]
    # The address goes into To/Reply-To headers, where a decoder would read "=?…?=" as an
    # RFC 2047 encoded word and turn it into other text, line breaks included.
    if "=?" in local or not local.isprintable():
        raise ValueError("the part before @ must not contain '=?' or control characters")
    return normalized.lower()


def _email(value: str) -> str:
    return normalise_address(value)


def _timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("unknown IANA time zone (e.g. Europe/Berlin)") from None
    return value


Email = Annotated[str, Field(max_length=320), AfterValidator(_email)]
Name = Annotated[str, Field(max_length=200)]
Ident = Annotated[str, Field(min_length=1, max_length=255)]
Locale = Annotated[str, Field(pattern=r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$", max_length=35)]
TimeZone = Annotated[str, Field(max_length=64), AfterValidator(_timezone)]

# Event times a letter can be planned and rendered for: converting to UTC, adding a delay
# and showing a local date all work here, on both databases.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)


def _plannable(value: datetime) -> datetime:
    try:
        utc = value.astimezone(UTC)
    except OverflowError:  # year 1 or 9999 pushed past the calendar by its offset
        utc = None
    if utc is None or not EARLIEST <= utc < LATEST:
        raise ValueError(f"must be from {EARLIEST:%Y-%m-%d} to before {LATEST:%Y-%m-%d} (UTC)")
    return value


Timestamp = Annotated[AwareDatetime, AfterValidator(_plannable)]


class _Part(BaseModel):
    # CRMs send more than we use; keep it (it is in the stored payload) rather than reject.
    model_config = ConfigDict(extra="allow", str_strip_whitespace=True)


class Contact(_Part):
    id: Ident | None = None
    email: Email | None = None
    first_name: Name | None = None
    last_name: Name | None = None
    locale: Locale | None = None
    timezone: TimeZone | None = None
    # How the letter addresses them (German "Frau"/"Herr", Polish "Pani"/"Pan", or
    # female/male); without it letters use a neutral greeting.
    salutation: Annotated[str, Field(max_length=40)] | None = None


class Deal(_Part):
    id: Ident | None = None
    number: Name | None = None
    title: Annotated[str, Field(max_length=500)] | None = None
    amount: Annotated[Decimal, Field(ge=0, max_digits=18, decimal_places=4)] | None = None
    currency: Annotated[str, Field(pattern=r"^[A-Za-z]{3}$")] | None = None


class Owner(_Part):
    name: Name | None = None
    email: Email | None = None


class Feedback(_Part):
    id: Ident | None = None
    rating: Annotated[int, Field(ge=0, le=100)] | None = None
    text: Annotated[str, Field(max_length=5000)] | None = None


class Referral(_Part):
    referred_name: Name | None = None
    referred_company: Name | None = None


CustomKey = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")]
CustomValue = Annotated[str, Field(max_length=1000)] | int | float | bool | None


class EventData(_Part):
    contact: Contact | None = None
    deal: Deal | None = None
    owner: Owner | None = None
    feedback: Feedback | None = None
    referral: Referral | None = None
    # The CRM's own fields, passed to letters as `custom` (plain values only: a letter
    # prints them, rules may test them as `custom.<key>`).
    custom: Annotated[dict[CustomKey, CustomValue], Field(max_length=50)] | None = None


class GenericEvent(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: EventType
    timestamp: Timestamp
    data: EventData

    @model_validator(mode="after")
    def _required_by_type(self) -> GenericEvent:
        email = self.data.contact.email if self.data.contact else None
        if (self.type in LETTER_EVENT_TYPES or self.type == "contact.unsubscribed") and not email:
            raise ValueError(f"data.contact.email is required for {self.type}")
        if self.type in CANCEL_EVENT_TYPES:
            deal_id = self.data.deal.id if self.data.deal else None
            if not deal_id and not email:
                raise ValueError(
                    f"{self.type} needs data.deal.id or data.contact.email to know what to cancel"
                )
        return self

    @property
    def contact_email(self) -> str | None:
        return self.data.contact.email if self.data.contact else None

    @property
    def contact_id(self) -> str | None:
        return self.data.contact.id if self.data.contact else None

    @property
    def deal_id(self) -> str | None:
        return self.data.deal.id if self.data.deal else None


class InvalidEvent(Exception):
    """Valid JSON that is not a valid event; `problems` say where and what."""

    def __init__(self, problems: list[dict[str, str]]) -> None:
        super().__init__("; ".join(f"{p['field']}: {p['message']}" for p in problems))
        self.problems = problems


def _problems(exc: ValidationError) -> list[dict[str, str]]:
    out = []
    for err in exc.errors(include_url=False, include_input=False):
        field = ".".join(str(part) for part in err["loc"]) or "(event)"
        out.append({"field": field, "message": err["msg"].removeprefix("Value error, ")})
    return out


# Deeper than any CRM record needs, and far below where serialising the payload (255
# levels) or parsing it again in a deeper call stack (the recursion limit) gives up.
MAX_DEPTH = 32
_SURROGATE = re.compile("[\ud800-\udfff]")


def _bad_text(text: str) -> str | None:
    # PostgreSQL stores neither NUL nor a lone surrogate in text or JSONB.
    if "\x00" in text:
        return "contains a NUL character (\\u0000)"
    if _SURROGATE.search(text):
        return "contains a lone surrogate (\\ud800-\\udfff), which is not Unicode"
    return None


def _unstorable(document: Any) -> tuple[str, str] | None:
    """(where, what) for the first value no database can store (NUL, lone surrogate,
    infinite number) or nesting deeper than MAX_DEPTH; None when the document is fine.
    Iterative, so a hostile document cannot exhaust the stack here."""
    stack: list[tuple[Any, str, int]] = [(document, "", 0)]
    while stack:
        value, path, depth = stack.pop()
        if depth > MAX_DEPTH:
            return path[:120], f"JSON nested more than {MAX_DEPTH} levels deep"
        if isinstance(value, str):
            problem = _bad_text(value)
            if problem:
                return path, problem
        elif isinstance(value, float) and not math.isfinite(value):
            return path, "a number too large to store"
        elif isinstance(value, dict):
            for key, item in value.items():
                problem = _bad_text(str(key))
                # A key that is not Unicode is named by its escape: the answer is JSON.
                name = json.dumps(str(key))[1:-1] if problem else str(key)
                here = f"{path}.{name}" if path else name
                if problem:
                    return here, f"key {problem}"
                stack.append((item, here, depth + 1))
        elif isinstance(value, list):
            stack.extend(
                (item, f"{path}.{i}" if path else str(i), depth + 1) for i, item in enumerate(value)
            )
    return None


def validate_event(document: Any) -> GenericEvent:
    """Validate an already-parsed JSON document; raise InvalidEvent."""
    # Refused here rather than accepted as an event that could never be stored.
    unstorable = _unstorable(document)
    if unstorable is not None:
        field, message = unstorable
        raise InvalidEvent([{"field": field or "(event)", "message": message}])
    try:
        return GenericEvent.model_validate(document)
    except ValidationError as exc:
        raise InvalidEvent(_problems(exc)) from None


def parse_event_json(body: str | bytes) -> GenericEvent:
    """Parse and validate raw JSON (ValueError for bad JSON, InvalidEvent for a bad event)."""
    return validate_event(json.loads(body))
