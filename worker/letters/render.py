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
from pathlib import Path
from typing import Any

import css_inline
from jinja2 import FileSystemLoader, StrictUndefined, TemplateError, meta, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

from worker.letters.context import build_context, safe_url
from worker.letters.wording import shorten_subject
from worker.tracking.html_links import mark_links

__all__ = ["MAX_SUBJECT", "RenderError", "Rendered", "Renderer", "build_context", "one_line"]

MAX_SUBJECT = 60
# keep_at_rules: the dark-mode @media block stays in a <style> (it cannot be inlined).
_INLINER = css_inline.CSSInliner(
    load_remote_stylesheets=False, keep_style_tags=False, keep_at_rules=True
)
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


def one_line(text: str) -> str:
    """No CR, LF or other control characters: for headers and subjects."""
    return _SPACE.sub(" ", "".join(ch if ch.isprintable() else " " for ch in text)).strip()


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
        # Per HTML template: the compiled template it was read from, its literal links and
        # the templates it references. Parsing a template costs more than rendering it, so
        # this is done again only when Jinja reloads the file after an edit.
        self._links: dict[str, tuple[object, set[str], list[str]]] = {}

    def render(self, letter: str, locale: str, context: dict[str, Any]) -> Rendered:
        base = f"{letter}/{locale}"
        try:
            subject = self._subject(base, context)
            text = self._text.get_template(f"{base}/body.txt").render(context)
            html = self._html.get_template(f"{base}/body.html").render(context, subject=subject)
            links = self._template_links(f"{base}/body.html")
        except TemplateError as exc:
            raise RenderError(f"{self._where(exc, base)}: {type(exc).__name__}: {exc}") from None
        # Optional paragraphs that rendered empty leave blank runs; fold them to one.
        text = _BLANK_RUNS.sub("\n\n", text).strip() + "\n"
        # Click tracking follows only links the template chose, marked here on the parsed
        # markup, before CSS inlining writes the text's quotes back out unescaped.
        step = context.get("next_step") or {}
        links.update(u for u in (context.get("next_step_url"), step.get("url")) if u)
        return Rendered(subject, text, _INLINER.inline(mark_links(html, links)), locale)

    def _subject(self, base: str, context: dict[str, Any]) -> str:
        """The subject within MAX_SUBJECT: first without the deal number, then cut at a
        word outside any parenthesis."""
        template = self._text.get_template(f"{base}/subject.txt")
        subject = one_line(template.render(context))
        deal = context.get("deal")
        if len(subject) > MAX_SUBJECT and isinstance(deal, dict) and deal.get("number"):
            subject = one_line(template.render({**context, "deal": {**deal, "number": None}}))
        return shorten_subject(subject, MAX_SUBJECT)

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
            links, referenced = self._links_in(current)
            found.update(links)
            pending.extend(referenced)
        return found

    def _links_in(self, name: str) -> tuple[set[str], list[str]]:
        template = self._html.get_template(name)  # the same object until the file changes
        cached = self._links.get(name)
        if cached is not None and cached[0] is template:
            return cached[1], cached[2]
        source, _, _ = self._loader.get_source(self._html, name)
        tree = self._html.parse(source, name)
        links = set()
        for data in tree.find_all(nodes.TemplateData):
            for quoted in _LITERAL_HREF.finditer(data.data):
                url = safe_url(html_lib.unescape(quoted.group(1) or quoted.group(2) or ""))
                if url:
                    links.add(url)
        referenced = [n for n in meta.find_referenced_templates(tree) if n]
        self._links[name] = (template, links, referenced)
        return links, referenced

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
