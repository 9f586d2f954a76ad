"""Who "we" are in a letter: the business, its address and legal lines, who signs.

Ops set it once in `config/brand.yaml` (THANKLY_BRAND_FILE), and any field can be set or
overridden by a THANKLY_BRAND_* variable (lists as lines separated by `|`). Letters never
invent it: a field left out is a sentence left out. The file is read again when it
changes; an edit that does not validate keeps the last good brand and is logged.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from email.utils import parseaddr
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from worker.events import Email

log = logging.getLogger(__name__)

Line = Annotated[str, Field(min_length=1, max_length=200)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class Person(_Strict):
    name: Line | None = None
    role: Line | None = None
    phone: Annotated[str, Field(max_length=40, pattern=r"^[0-9+()./ -]+$")] | None = None
    email: Email | None = None


class Brand(_Strict):
    company: Line | None = None
    # The From display name when the deal has no owner (the address is THANKLY_MAIL_FROM).
    sender_name: Line | None = None
    # Where replies go when the deal has no owner.
    reply_to: Email | None = None
    address: Annotated[list[Line], Field(max_length=6)] = []
    # Lines German business mail must carry (register, managing directors, VAT id, …).
    legal: Annotated[list[Line], Field(max_length=8)] = []
    signer: Person = Person()
    # Who a new customer talks to about getting started, if the business has such a person.
    onboarding: Person = Person()
    # What a referrer gets, per locale ("*" for any), e.g. {de: "einen Gutschein über 50 €"}.
    referral_reward: dict[str, Line] = {}
    logo_url: Annotated[str, Field(max_length=500, pattern=r"^https://[^\s<>\"']+$")] | None = None

    @field_validator("referral_reward", mode="before")
    @classmethod
    def _per_locale(cls, value: object) -> object:
        if isinstance(value, str):
            return {"*": value}
        if isinstance(value, dict):
            return {str(k).replace("_", "-").lower(): v for k, v in value.items()}
        return value

    def reward(self, locale: str) -> str | None:
        tag = locale.lower()
        for key in (tag, tag.split("-", 1)[0], "*"):
            if key in self.referral_reward:
                return self.referral_reward[key]
        return None


class BrandError(ValueError):
    """The brand file or a THANKLY_BRAND_* variable does not validate."""


# THANKLY_BRAND_<NAME> → (field, subfield); lists are `|`-separated.
_ENV_FIELDS: dict[str, tuple[str, str | None]] = {
    "COMPANY": ("company", None),
    "SENDER_NAME": ("sender_name", None),
    "REPLY_TO": ("reply_to", None),
    "ADDRESS": ("address", None),
    "LEGAL": ("legal", None),
    "LOGO_URL": ("logo_url", None),
    "REFERRAL_REWARD": ("referral_reward", None),
    "SIGNER_NAME": ("signer", "name"),
    "SIGNER_ROLE": ("signer", "role"),
    "SIGNER_PHONE": ("signer", "phone"),
    "SIGNER_EMAIL": ("signer", "email"),
    "ONBOARDING_NAME": ("onboarding", "name"),
    "ONBOARDING_EMAIL": ("onboarding", "email"),
    "ONBOARDING_PHONE": ("onboarding", "phone"),
}
_LISTS = {"address", "legal"}


def brand_variables() -> list[str]:
    return [f"THANKLY_BRAND_{suffix}" for suffix in _ENV_FIELDS]


def _from_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for suffix, (name, sub) in _ENV_FIELDS.items():
        raw = environ.get(f"THANKLY_BRAND_{suffix}", "").strip()
        if not raw:
            continue
        value: Any = [p.strip() for p in raw.split("|") if p.strip()] if name in _LISTS else raw
        if sub is None:
            found[name] = value
        else:
            found.setdefault(name, {})[sub] = value
    return found


def parse_brand(path: Path, environ: Mapping[str, str]) -> Brand:
    """The brand from `path` (missing: empty) with THANKLY_BRAND_* on top."""
    data: dict[str, Any] = {}
    if path.is_file():
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise BrandError(f"{path}: not valid YAML: {exc}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise BrandError(f"{path}: must map fields to values, e.g. company: Nordlicht GmbH")
        data = dict(loaded or {})
    for name, value in _from_environment(environ).items():
        if isinstance(value, dict) and isinstance(data.get(name), dict):
            data[name] = {**data[name], **value}
        else:
            data[name] = value
    try:
        return Brand.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        )
        raise BrandError(f"{path}: {problems}") from None


class BrandStore:
    """The brand in force: read again when the file changes, the last good one kept."""

    def __init__(self, path: Path, environ: Mapping[str, str] | None = None) -> None:
        self.path = path
        self._environ = os.environ if environ is None else environ
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._brand: Brand | None = None

    def _file_stamp(self) -> tuple[int, int]:
        try:
            stat = self.path.stat()
        except OSError:
            return (0, 0)
        return (stat.st_mtime_ns, stat.st_size)

    def get(self) -> Brand:
        """Raises BrandError only when no valid brand was ever read (a process start)."""
        stamp = self._file_stamp()
        with self._lock:
            if self._brand is not None and stamp == self._stamp:
                return self._brand
            try:
                brand = parse_brand(self.path, self._environ)
            except BrandError as exc:
                if self._brand is None:
                    raise
                log.error("brand not reloaded, the last good one stays in force: %s", exc)
                self._stamp = stamp
                return self._brand
            self._brand, self._stamp = brand, stamp
            return brand


def sender_display_name(mail_from: str) -> str | None:
    return parseaddr(mail_from)[0] or None
