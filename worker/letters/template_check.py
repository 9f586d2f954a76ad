"""`thankly templates check`: every letter in every locale, rendered with every example event.

Stricter than sending: besides what would fail a letter (syntax errors, undefined
variables), it reports what would make a letter look broken: a value printed as "None",
a subject the renderer would have to cut, an empty body, `{{`/`}}` left in the text, and
HTML whose tags do not match. A letter rendered with an event its rules send it for is
also held to what makes it one an owner would send: 120-250 words, one or two next
steps, none of the phrases in FORBIDDEN (promises the business may not keep, and
clichés), no empty punctuation where a value was left out. Each problem is
`file:line: message`, pointing at the template line to fix.
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

from worker.events import InvalidEvent, parse_event_json, validate_event
from worker.letters.brand import Brand, Person
from worker.letters.catalogue import LETTER_FILES, Catalogue
from worker.letters.compose import letter_setup, rule_for
from worker.letters.context import LetterSetup
from worker.letters.render import MAX_SUBJECT, build_context, one_line
from worker.letters.wording import shorten_subject
from worker.planning.rules_model import Defaults, RuleSet
from worker.settings import Settings

# The least a letter event carries (contact.email only): every optional paragraph off.
MINIMAL_EVENT: dict[str, Any] = {
    "type": "deal.closed",
    "timestamp": "2026-11-20T10:00:00Z",
    "data": {"contact": {"email": "sam@example.com"}},
}
MINIMAL_NAME = "the minimal event"
MINIMAL_TYPES = ("deal.closed", "feedback.logged", "referral.made")
# Templates branch on the booking link; both branches must render.
NEXT_STEP_URLS = (None, "https://example.org/book")
UNSUBSCRIBE_URL = "https://thankly.example/u/check"
# A brand with everything set, besides the one in force: every optional line renders.
FULL_BRAND = Brand(
    company="Nordlicht Software GmbH",
    sender_name="Nordlicht Software",
    reply_to="hello@nordlicht.example",
    address=["Hafenstraße 12", "20457 Hamburg"],
    legal=["Amtsgericht Hamburg HRB 123456", "Geschäftsführerin: Jana Nord"],
    signer=Person(name="Katrin Weber", role="Customer Success", phone="+49 40 123456"),
    onboarding=Person(name="Jonas Berg", email="jonas@nordlicht.example"),
    referral_reward={"*": "a voucher"},
    logo_url="https://nordlicht.example/logo.png",
)
MIN_WORDS, MAX_WORDS = 120, 250

# Promises the business may not keep, and clichés: never in a letter (lower case).
FORBIDDEN = (
    # promises only the business can make (they come from brand or rule settings)
    "already with our onboarding team",
    "free 30-minute onboarding call",
    "most of our new customers come through",
    "picking a new partner",
    # clichés and empty phrases
    "highest compliment",
    "helping us get better",
    "means the world",
    "valued customer",
    "do not hesitate",
    "не разовая сделка",
    "ценим каждого клиента",
    "не стесняйтесь",
    "das schönste kompliment",
    "zögern sie nicht",
    "jednorazową transakcję",
    "nie wahaj się",
    "najwyższy komplement",
)
# What a value left out leaves behind: empty quotes or brackets, a space before a comma.
_ARTEFACTS = re.compile(
    r"\b(?:None|null|undefined|nan)\b|\(\s*\)|\[\s*\]|\u00ab\s*\u00bb|\u201e\s*[\u201c\u201d]"
    r"|\u201c\s*\u201d|\"\s*\"| [,.;:!?](?!\S)|,,|(?<!\.)\.\.(?!\.)"
)

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


class _Links(HTMLParser):
    """The href of every <a> in a document."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        href = dict(attrs).get("href")
        if tag == "a" and href:
            self.hrefs.append(href)


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

    def render(
        self,
        letter: str,
        locale: str,
        payload: dict[str, Any],
        event: str,
        setups: list[LetterSetup],
        strict: bool,
    ) -> None:
        base = f"{letter}/{locale}"
        contact = payload["data"].get("contact") or {}
        for setup in setups:
            context = build_context(
                payload,
                locale,
                contact.get("timezone") or self.timezone,
                setup=setup,
                unsubscribe_url=UNSUBSCRIBE_URL,
            )
            try:
                subject = self.subject(base, context)
                text = self.text.get_template(f"{base}/body.txt").render(context)
                html = self.html.get_template(f"{base}/body.html").render(context, subject=subject)
            except (TemplateError, _PrintsNone) as exc:
                where = _template_line(exc, self.root) or (f"{base}/body.txt", 1)
                message = str(exc) if isinstance(exc, _PrintsNone) else f"{exc}"
                kind = "" if isinstance(exc, _PrintsNone) else f"{type(exc).__name__}: "
                self.add(*where, f"{kind}{message}", event)
                return
            self.rendered(base, subject, text, html, event)
            if strict:
                self.reads_well(base, subject, text, html, event)

    def subject(self, base: str, context: dict[str, Any]) -> str:
        """As the renderer makes it: without the deal number when that is what fits."""
        template = self.text.get_template(f"{base}/subject.txt")
        subject = one_line(template.render(context))
        deal = context["deal"]
        if len(subject) > MAX_SUBJECT and deal.get("number"):
            subject = one_line(template.render({**context, "deal": {**deal, "number": None}}))
        return subject

    def rendered(self, base: str, subject: str, text: str, html: str, event: str) -> None:
        if len(subject) > MAX_SUBJECT:
            self.add(
                f"{base}/subject.txt",
                1,
                f"subject over {MAX_SUBJECT} characters, so it is cut at a word "
                f"({shorten_subject(subject, MAX_SUBJECT)!r})",
                event,
            )
        if not subject:
            self.add(f"{base}/subject.txt", 1, "subject is empty", event)
        if not text.strip():
            self.add(f"{base}/body.txt", 1, "plain-text body is empty", event)
        if not re.sub(r"<[^>]*>|\s", "", html.split("<body", 1)[-1]):
            self.add(f"{base}/body.html", 1, "HTML body has no text", event)
        self.tags(base, html, event)

    def reads_well(self, base: str, subject: str, text: str, html: str, event: str) -> None:
        """What a letter sent for this event must be, besides not broken."""
        words = len(text.split())
        if not MIN_WORDS <= words <= MAX_WORDS:
            side = f"fewer than {MIN_WORDS}" if words < MIN_WORDS else f"more than {MAX_WORDS}"
            self.add(
                f"{base}/body.txt",
                1,
                f"{side} words (a letter has {MIN_WORDS}-{MAX_WORDS})",
                event,
            )
        steps = _Links()
        steps.feed(html)
        steps.close()
        links = [u for u in steps.hrefs if u != UNSUBSCRIBE_URL]
        if not 1 <= len(links) <= 2:
            self.add(
                f"{base}/body.html",
                1,
                f"{len(links)} next steps (links besides unsubscribe); a letter offers 1 or 2",
                event,
            )
        for name, part in ((f"{base}/subject.txt", subject), (f"{base}/body.txt", text)):
            lowered = part.lower()
            for phrase in FORBIDDEN:
                if phrase in lowered:
                    self.add(name, self.line_with(name, phrase), f"forbidden phrase {phrase!r}")
            for line in part.splitlines():
                artefact = _ARTEFACTS.search(line)
                if artefact:
                    self.add(
                        name,
                        1,
                        f"a left-out value shows: {artefact.group(0)!r} in {line.strip()[:60]!r}",
                        event,
                    )

    def line_with(self, name: str, phrase: str) -> int:
        for number, line in enumerate(self.source_lines(name), start=1):
            if phrase in line.lower():
                return number
        return 1

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


def _setups(
    settings: Settings, rules: RuleSet, brand: Brand, letter: str, event: dict[str, Any]
) -> tuple[list[LetterSetup], bool]:
    """The setups to render `letter` with for `event`, and whether the event is one its
    rules send it for (then the letter is held to the stricter checks). Rendered with the
    brand in force and a full one, and with the booking link set and unset."""
    parsed = validate_event(event)
    rule = rule_for(rules, letter, parsed)
    strict = any(r.letter == letter and r.on == parsed.type for r in rules.rules)
    setups = []
    for each in (brand, FULL_BRAND):
        for url in NEXT_STEP_URLS:
            base = letter_setup(
                settings.model_copy(update={"next_step_url": url}), each, rules, rule
            )
            setups.append(base)
    return setups, strict


def check_templates(
    templates_dir: Path,
    examples: Path | None = None,
    default_timezone: str | None = None,
    *,
    rules: RuleSet | None = None,
    brand: Brand | None = None,
    settings: Settings | None = None,
) -> Report:
    """Render every letter in every locale with every event (the example events and a
    minimal one of each letter type), with the rules and brand in force (default: the
    built-in defaults and no brand)."""
    settings = settings or Settings(templates_dir=templates_dir)
    rules = rules or RuleSet(Defaults(), (), settings.rules_file)
    brand = brand or Brand()
    timezone = default_timezone or rules.defaults.timezone
    examples = examples or examples_dir(templates_dir)
    events, event_problems = _example_events(examples)
    for kind in MINIMAL_TYPES:
        minimal = {**MINIMAL_EVENT, "type": kind}
        events[_minimal_name(kind)] = parse_event_json(json.dumps(minimal)).model_dump(mode="json")
    catalogue = Catalogue.scan(templates_dir)
    checker = _Checker(templates_dir, timezone)
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
            setups, strict = _setups(settings, rules, brand, letter, payload)
            checker.render(letter, locale, payload, name, setups, strict)
    return Report(
        letters=len(pairs),
        events=list(events),
        examples=examples,
        examples_found=examples.is_dir(),
        problems=event_problems + checker.problems(list(events)),
    )


def _minimal_name(kind: str) -> str:
    return f"{MINIMAL_NAME} ({kind})"
