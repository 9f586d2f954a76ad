"""`thankly templates check`: every letter in every locale, rendered with every example event.

Stricter than sending: besides what would fail a letter (syntax errors, undefined
variables), it reports what would make a letter look broken: a value printed as "None",
a subject the renderer would have to cut, an empty body, `{{`/`}}` left in the text, and
HTML whose tags do not match. Each problem is `file:line: message`, pointing at the
template line to fix.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from jinja2 import FileSystemLoader, StrictUndefined, TemplateError, TemplateSyntaxError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from worker.events import InvalidEvent, parse_event_json
from worker.letters.catalogue import LETTER_FILES, Catalogue
from worker.letters.render import MAX_SUBJECT, build_context, one_line

# The least a letter event carries (contact.email only): every optional paragraph off.
MINIMAL_EVENT: dict[str, Any] = {
    "type": "deal.closed",
    "timestamp": "2026-11-20T10:00:00Z",
    "data": {"contact": {"email": "sam@example.com"}},
}
MINIMAL_NAME = "the minimal event"
# Templates branch on the booking link; both branches must render.
NEXT_STEP_URLS = (None, "https://example.org/book")
UNSUBSCRIBE_URL = "https://thankly.example/u/check"

_TAG = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.DOTALL)
_LEFTOVER = re.compile(r"\{\{|\}\}|\{%|%\}|\{#|#\}")
_VOID = frozenset(
    "area base br col embed hr img input link meta source track wbr".split()  # noqa: SIM905
)


def examples_dir(templates_dir: Path) -> Path:
    """Example events ship beside the templates: `<project>/examples/events/`."""
    return templates_dir.resolve().parent / "examples" / "events"


@dataclass(frozen=True)
class Problem:
    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


@dataclass
class Report:
    letters: int  # (letter, locale) pairs
    events: list[str]
    examples: Path
    examples_found: bool
    problems: list[Problem] = field(default_factory=list)

    @property
    def summary(self) -> str:
        found = f"{len(self.problems)} problem(s)" if self.problems else "no problems"
        times = "\N{MULTIPLICATION SIGN}"
        return (
            f"{_count(self.letters, 'letter')} {times} {_count(len(self.events), 'event')}: {found}"
        )


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


class _PrintsNone(Exception):
    """A `{{ }}` printed a missing value: the reader would see "None"."""


def _no_none(value: Any) -> Any:
    if value is None:
        raise _PrintsNone("prints None (a missing value: guard it with {% if %})")
    return value


def _environment(root: Path, autoescape: bool) -> ImmutableSandboxedEnvironment:
    return ImmutableSandboxedEnvironment(
        loader=FileSystemLoader(root),
        undefined=StrictUndefined,
        autoescape=autoescape,
        finalize=_no_none,
    )


def _template_line(exc: BaseException, root: Path) -> tuple[str, int] | None:
    """The innermost template frame of an error raised while rendering (Jinja rewrites
    the traceback so those frames carry the template's file name and line)."""
    found, tb = None, exc.__traceback__
    while tb is not None:
        path = Path(tb.tb_frame.f_code.co_filename)
        if path.is_relative_to(root):
            found = (path.relative_to(root).as_posix(), tb.tb_lineno)
        tb = tb.tb_next
    return found


class _TagBalance(HTMLParser):
    """Records the first end tag that closes nothing open, or a tag left open."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.open: list[str] = []
        self.problem: tuple[str, str] | None = None  # (message, offending tag as written)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in _VOID:
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if self.problem is not None or tag in _VOID:
            return
        if not self.open or self.open[-1] != tag:
            inside = f"inside <{self.open[-1]}>" if self.open else "with nothing open"
            self.problem = (f"HTML does not parse: </{tag}> {inside}", f"</{tag}>")
        else:
            self.open.pop()


class _Checker:
    def __init__(self, templates_dir: Path, default_timezone: str) -> None:
        self.shown = templates_dir
        self.root = templates_dir.resolve()
        self.timezone = default_timezone
        self.text = _environment(self.root, autoescape=False)
        self.html = _environment(self.root, autoescape=True)
        # (file, line, message) → names of the events that show it, in order.
        self.found: dict[tuple[str, int, str], list[str]] = {}

    def add(self, name: str, line: int, message: str, event: str | None = None) -> None:
        names = self.found.setdefault((name, line, message), [])
        if event is not None and event not in names:
            names.append(event)

    def source_lines(self, name: str) -> list[str]:
        return (self.root / name).read_text(encoding="utf-8").splitlines()

    def static(self, name: str) -> bool:
        """Syntax and leftover delimiters in one file; False when it does not parse."""
        source = (self.root / name).read_text(encoding="utf-8")
        try:
            self.text.parse(source, name=name)
        except TemplateSyntaxError as exc:
            self.add(name, exc.lineno, f"syntax error: {exc.message}")
            return False
        # Outside real tags, a `{{` or `}}` is a typo the reader would see verbatim.
        blanked = _TAG.sub(lambda m: "\n" * m.group(0).count("\n"), source)
        for number, line in enumerate(blanked.splitlines(), start=1):
            leftover = _LEFTOVER.search(line)
            if leftover:
                self.add(name, number, f"{leftover.group(0)!r} is not part of a tag")
        return True

    def render(self, letter: str, locale: str, payload: dict[str, Any], event: str) -> None:
        base = f"{letter}/{locale}"
        contact = payload["data"].get("contact") or {}
        for url in NEXT_STEP_URLS:
            context = build_context(
                payload,
                locale,
                contact.get("timezone") or self.timezone,
                next_step_url=url,
                unsubscribe_url=UNSUBSCRIBE_URL,
            )
            try:
                subject = one_line(self.text.get_template(f"{base}/subject.txt").render(context))
                text = self.text.get_template(f"{base}/body.txt").render(context)
                html = self.html.get_template(f"{base}/body.html").render(context, subject=subject)
            except (TemplateError, _PrintsNone) as exc:
                where = _template_line(exc, self.root) or (f"{base}/body.txt", 1)
                message = str(exc) if isinstance(exc, _PrintsNone) else f"{exc}"
                kind = "" if isinstance(exc, _PrintsNone) else f"{type(exc).__name__}: "
                self.add(*where, f"{kind}{message}", event)
                return
            self.rendered(base, subject, text, html, event)

    def rendered(self, base: str, subject: str, text: str, html: str, event: str) -> None:
        if len(subject) > MAX_SUBJECT:
            self.add(
                f"{base}/subject.txt",
                1,
                f"subject over {MAX_SUBJECT} characters, so it is cut at a word",
                event,
            )
        if not subject:
            self.add(f"{base}/subject.txt", 1, "subject is empty", event)
        if not text.strip():
            self.add(f"{base}/body.txt", 1, "plain-text body is empty", event)
        if not re.sub(r"<[^>]*>|\s", "", html.split("<body", 1)[-1]):
            self.add(f"{base}/body.html", 1, "HTML body has no text", event)
        self.tags(base, html, event)

    def tags(self, base: str, html: str, event: str) -> None:
        parser = _TagBalance()
        parser.feed(html)
        parser.close()
        if parser.problem is None and parser.open:
            parser.problem = (f"HTML does not parse: <{parser.open[-1]}> is never closed", "")
        if parser.problem is None:
            return
        message, token = parser.problem
        # Point at the template line that writes the offending tag (the letter, else its base).
        for name in (f"{base}/body.html", "_base/layout.html"):
            if not (self.root / name).is_file():
                continue
            for number, line in enumerate(self.source_lines(name), start=1):
                if token and token in line:
                    self.add(name, number, message, event)
                    return
        self.add(f"{base}/body.html", 1, message, event)

    def problems(self, every: list[str]) -> list[Problem]:
        result = []
        for (name, line, message), events in self.found.items():
            if events:
                which = (
                    "every event"
                    if events == every
                    else ", ".join(events)
                    if len(events) <= 3
                    else f"{len(events)} of {len(every)} events, e.g. {events[0]}"
                )
                message = f"{message} (with {which})"
            result.append(Problem((self.shown / name).as_posix(), line, message))
        return sorted(result, key=lambda p: (p.file, p.line, p.message))


def _example_events(folder: Path) -> tuple[dict[str, dict[str, Any]], list[Problem]]:
    events: dict[str, dict[str, Any]] = {}
    problems = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            parsed = parse_event_json(path.read_bytes())
        except json.JSONDecodeError as exc:
            problems.append(Problem(path.as_posix(), exc.lineno, f"not valid JSON: {exc.msg}"))
            continue
        except InvalidEvent as exc:
            problems.append(Problem(path.as_posix(), 1, f"not a valid event: {exc}"))
            continue
        except ValueError as exc:
            problems.append(Problem(path.as_posix(), 1, f"not valid JSON: {exc}"))
            continue
        events[path.name] = parsed.model_dump(mode="json")
    return events, problems


def check_templates(
    templates_dir: Path, examples: Path | None = None, default_timezone: str = "UTC"
) -> Report:
    """Render every letter in every locale with every event (the example events and the
    minimal one); `default_timezone` is the rules' default, for contacts without one."""
    examples = examples or examples_dir(templates_dir)
    events, event_problems = _example_events(examples)
    events[MINIMAL_NAME] = parse_event_json(json.dumps(MINIMAL_EVENT)).model_dump(mode="json")
    catalogue = Catalogue.scan(templates_dir)
    checker = _Checker(templates_dir, default_timezone)
    parses = {
        path.relative_to(checker.root).as_posix(): checker.static(
            path.relative_to(checker.root).as_posix()
        )
        for path in sorted(checker.root.rglob("*"))
        if path.is_file() and path.suffix in {".txt", ".html"}
    }
    pairs = [
        (letter, locale) for letter in catalogue.letters for locale in catalogue.letters[letter]
    ]
    for letter, locale in sorted(pairs):
        names = [f"{letter}/{locale}/{f}" for f in LETTER_FILES]
        if not all(parses.get(name, True) for name in [*names, "_base/layout.html"]):
            continue  # its syntax error is reported once, not per event
        for name, payload in events.items():
            checker.render(letter, locale, payload, name)
    return Report(
        letters=len(pairs),
        events=list(events),
        examples=examples,
        examples_found=examples.is_dir(),
        problems=event_problems + checker.problems(list(events)),
    )
