"""Rendering a dashboard page: the Jinja environment (autoescaped: every stored text, from
a CRM or a letter, is printed as text), numbers and times in the reader's formats, and the
headers every page carries.

Numbers and dates follow the browser's Accept-Language (English words throughout); times
are shown in the viewer's time zone, chosen in the page footer and kept in a cookie (UTC
until then), since a page without JavaScript cannot ask the browser for it.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from babel import Locale, UnknownLocaleError
from babel.dates import format_datetime
from babel.numbers import format_decimal, format_percent
from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from worker.runtime import Runtime
from worker.ui.access import Viewer, csrf_token

HERE = Path(__file__).parent
NONE = "\u2013"  # an en dash where there is no value
TZ_COOKIE = "thankly_tz"
# Only this origin's stylesheet and forms; frames only from here (the letter preview, which
# carries its own, stricter policy); never framed elsewhere.
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
    "frame-src 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
}
# Locales Babel formats for; a browser asking for anything else gets English.
_FORMAT_LOCALES = ("en_US", "en_GB", "de", "de_AT", "de_CH", "ru", "pl", "fr", "es", "it", "nl")

_env = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def format_locale(request: Request) -> Locale:
    """The first language of Accept-Language that Babel knows, for numbers and dates."""
    header = request.headers.get("accept-language", "")
    wanted = [part.split(";")[0].strip().replace("-", "_") for part in header.split(",")]
    for tag in wanted:
        if not tag or tag == "*":
            continue
        try:
            found = Locale.parse(tag)
        except (ValueError, UnknownLocaleError):
            continue
        if str(found) in _FORMAT_LOCALES or found.language in _FORMAT_LOCALES:
            return found
    return Locale.parse("en_GB")


def viewer_zone(request: Request) -> ZoneInfo:
    name = request.cookies.get(TZ_COOKIE, "UTC")
    try:
        return ZoneInfo(name) if name in zones() else ZoneInfo("UTC")
    except ZoneInfoNotFoundError:
        return ZoneInfo("UTC")


_ZONES: list[str] = []


def zones() -> list[str]:
    if not _ZONES:
        _ZONES.extend(sorted(z for z in available_timezones() if "/" in z or z == "UTC"))
    return _ZONES


class Formats:
    """What templates call to show numbers and times to this reader."""

    def __init__(self, locale: Locale, zone: ZoneInfo) -> None:
        self.locale, self.zone = locale, zone

    def number(self, value: float | int | None) -> str:
        return NONE if value is None else format_decimal(value, locale=self.locale)

    def percent(self, value: float | None, digits: int = 1) -> str:
        if value is None:
            return NONE
        return format_percent(value, f"#,##0.{'0' * digits}%", locale=self.locale)

    def when(self, value: datetime | str | None) -> str:
        if value is None or value == "":
            return NONE
        moment = (
            datetime.fromisoformat(value.replace("Z", "+00:00"))
            if isinstance(value, str)
            else value
        )
        return format_datetime(moment.astimezone(self.zone), "medium", locale=self.locale)

    def iso(self, value: datetime | str | None) -> str:
        """For the `datetime` attribute of <time>: machine-readable UTC."""
        if value is None or value == "":
            return ""
        return value if isinstance(value, str) else value.isoformat()


def page(
    request: Request,
    template: str,
    who: Viewer | None,
    *,
    status: int = 200,
    **context: Any,
) -> HTMLResponse:
    formats = Formats(format_locale(request), viewer_zone(request))
    html = _env.get_template(template).render(
        who=who,
        csrf=csrf_token(request, who) if who is not None else "",
        f=formats,
        zone=formats.zone.key,
        zones=zones(),
        path=request.url.path,
        query=str(request.url.query),
        **context,
    )
    return HTMLResponse(html, status_code=status, headers=HEADERS)


def runtime_of(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime
