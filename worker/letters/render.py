"""Rendering a letter: subject, plain text and HTML, in the recipient's locale.

Templates come from ops-editable files, data from CRMs: both are untrusted. Templates run
in Jinja's ImmutableSandboxedEnvironment with StrictUndefined (a typo is an error, never
an empty string); CRM strings are only ever values, never template source. HTML is
autoescaped and gets its CSS inlined; text and subject use a separate, non-escaping
environment so "Müller & Co" stays readable there.
"""

from __future__ import annotations

import html as html_lib
import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import css_inline
from babel.core import Locale, UnknownLocaleError
from babel.dates import format_date
from babel.numbers import format_currency, format_decimal
from jinja2 import FileSystemLoader, StrictUndefined, TemplateError, meta, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

from worker.planning.rules_model import CONDITION_PATHS
from worker.tracking.html_links import mark_links

MAX_SUBJECT = 60
_INLINER = css_inline.CSSInliner(load_remote_stylesheets=False, keep_style_tags=False)
_SPACE = re.compile(r"\s+")
_BLANK_RUNS = re.compile(r"\n[ \t]*(\n[ \t]*)+\n")
# An href written out whole in a template's markup (no Jinja expression inside it).
_LITERAL_HREF = re.compile(r"""\bhref\s*=\s*(?:"([^"{}]*)"|'([^'{}]*)')""", re.IGNORECASE)


class RenderError(Exception):
    """The template could not be rendered (permanent: retrying gives the same error)."""


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str
    # The letter folder's locale: the message's footer speaks the letter's language.
    # None for renderings stored before it was kept (they get the English footer).
    locale: str | None = None


def _babel_locale(locale: str) -> Locale:
    try:
        return Locale.parse(locale.replace("-", "_"))
    except (UnknownLocaleError, ValueError):
        return Locale.parse("en")


def format_amount(amount: Any, currency: str | None, locale: str) -> str | None:
    if amount in (None, ""):
        return None
    try:
        value = Decimal(str(amount))
    except InvalidOperation:
        return None
    where = _babel_locale(locale)
    if currency:
        return str(format_currency(value, currency.upper(), locale=where))
    return str(format_decimal(value, locale=where))


def safe_url(url: str | None) -> str | None:
    """Only absolute http(s) URLs ever go into a letter's links."""
    if url and re.match(r"^https?://[^\s<>\"']+$", url, re.IGNORECASE):
        return url
    return None


def one_line(text: str) -> str:
    """No CR, LF or other control characters: for headers and subjects."""
    return _SPACE.sub(" ", "".join(ch if ch.isprintable() else " " for ch in text)).strip()


def build_context(
    payload: dict[str, Any],
    locale: str,
    timezone: str,
    *,
    next_step_url: str | None = None,
    unsubscribe_url: str | None = None,
) -> dict[str, Any]:
    """What a template sees (templates/README.md): every section with every key."""
    data = payload.get("data") or {}
    context: dict[str, Any] = {
        section: {key: (data.get(section) or {}).get(key) for key in keys}
        for section, keys in CONDITION_PATHS.items()
    }
    deal = context["deal"]
    occurred = datetime.fromisoformat(str(payload["timestamp"]).replace("Z", "+00:00"))
    context.update(
        amount=format_amount(deal["amount"], deal["currency"], locale),
        event_date=format_date(
            occurred.astimezone(ZoneInfo(timezone)).date(), "long", locale=_babel_locale(locale)
        ),
        next_step_url=safe_url(next_step_url),
        unsubscribe_url=safe_url(unsubscribe_url),
        locale=locale,
    )
    return context


class Renderer:
    def __init__(self, templates_dir: Path) -> None:
        self._root = templates_dir.resolve()
        loader = self._loader = FileSystemLoader(self._root)
        common: dict[str, Any] = {
            "loader": loader,
            "undefined": StrictUndefined,
            "keep_trailing_newline": False,
            "auto_reload": True,  # ops edits apply without a restart
        }
        self._html = ImmutableSandboxedEnvironment(autoescape=True, **common)
        self._text = ImmutableSandboxedEnvironment(autoescape=False, **common)

    def render(self, letter: str, locale: str, context: dict[str, Any]) -> Rendered:
        base = f"{letter}/{locale}"
        try:
            subject = one_line(self._text.get_template(f"{base}/subject.txt").render(context))
            subject = _shorten(subject, MAX_SUBJECT)
            text = self._text.get_template(f"{base}/body.txt").render(context)
            html = self._html.get_template(f"{base}/body.html").render(context, subject=subject)
            links = self._template_links(f"{base}/body.html")
        except TemplateError as exc:
            raise RenderError(f"{self._where(exc, base)}: {type(exc).__name__}: {exc}") from None
        # Optional paragraphs that rendered empty leave blank runs; fold them to one.
        text = _BLANK_RUNS.sub("\n\n", text).strip() + "\n"
        # Click tracking follows only links the template chose, marked here on the parsed
        # markup, before CSS inlining writes the text's quotes back out unescaped.
        if context.get("next_step_url"):
            links.add(context["next_step_url"])
        return Rendered(subject, text, _INLINER.inline(mark_links(html, links)), locale)

    def _template_links(self, name: str) -> set[str]:
        """The http(s) URLs written literally in `name`'s markup and the templates it
        extends or includes. A URL built from data is never one of them."""
        found: set[str] = set()
        pending, seen = [name], set()
        while pending:
            current = pending.pop()
            if current in seen:
                continue
            seen.add(current)
            source, _, _ = self._loader.get_source(self._html, current)
            tree = self._html.parse(source, current)
            for data in tree.find_all(nodes.TemplateData):
                for quoted in _LITERAL_HREF.finditer(data.data):
                    url = safe_url(html_lib.unescape(quoted.group(1) or quoted.group(2) or ""))
                    if url:
                        found.add(url)
            pending.extend(n for n in meta.find_referenced_templates(tree) if n)
        return found

    def _where(self, exc: TemplateError, fallback: str) -> str:
        """`letter/locale/file:line` of the failing template line, for ops staff."""
        name, line = getattr(exc, "name", None), getattr(exc, "lineno", None)
        if name and line:  # syntax errors know where they are
            return f"{name}:{line}"
        # Runtime errors do not, but Jinja rewrites the traceback to template lines.
        tb, found = exc.__traceback__, None
        while tb is not None:
            path = Path(tb.tb_frame.f_code.co_filename)
            if path.is_relative_to(self._root):
                found = f"{path.relative_to(self._root).as_posix()}:{tb.tb_lineno}"
            tb = tb.tb_next
        return found or fallback


def _shorten(subject: str, limit: int) -> str:
    if len(subject) <= limit:
        return subject
    cut = subject[: limit - 1].rsplit(" ", 1)[0]
    return cut.rstrip(",;:-\u2013 ") + "\u2026"
