"""The rules file (`config/rules.yaml`): reading it, and keeping the last good version.

Loading gives either a valid RuleSet or every problem at once, each with the file line and
what to write instead. `RulesStore` reloads the file when it changes and keeps the last
valid rules in force when an edit is broken. What the rules say, once valid, is in
`rules_model.py`.
"""

from __future__ import annotations

import difflib
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from worker.letters.catalogue import Catalogue, normalise_locale
from worker.planning.rules_model import RuleSet, RulesFile

log = logging.getLogger(__name__)

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

    def check_letter(loc: tuple[int | str, ...], letter: str) -> None:
        if not catalogue.has(letter):
            known = sorted(catalogue.letters)
            close = difflib.get_close_matches(letter, known, n=1)
            hint = (
                f"did you mean {close[0]}?"
                if close
                else f"known letters: {', '.join(known) or 'none'}"
            )
            add(loc, f"no letter {letter!r} in the templates folder; {hint}")
        elif not catalogue.has(letter, parsed.defaults.locale):
            add(
                loc,
                f"{letter} has no {parsed.defaults.locale!r} version, the default locale "
                "every other locale falls back to (it has: "
                f"{', '.join(sorted(catalogue.letters[letter]))})",
            )

    seen: dict[str, int] = {}
    experiments: dict[str, int] = {}
    for index, rule in enumerate(parsed.rules):
        if rule.name in seen:
            add(
                ("rules", index, "name"),
                f"{rule.name!r} is already the name of rules[{seen[rule.name]}]; "
                "names must be unique",
            )
        seen.setdefault(rule.name, index)
        check_letter(("rules", index, "letter"), rule.letter)
        if rule.experiment is None:
            continue
        name = rule.experiment.name
        if name in experiments:
            # Arms are assigned per (experiment, contact): two rules under one name would
            # share contacts' arms and mix their outcomes in one report.
            add(
                ("rules", index, "experiment", "name"),
                f"experiment {name!r} is already run by rules[{experiments[name]}]; "
                "each rule's experiment needs its own name",
            )
        experiments.setdefault(name, index)
        for arm, chosen in rule.experiment.variants.items():
            check_letter(("rules", index, "experiment", "variants", arm), chosen.letter)
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
