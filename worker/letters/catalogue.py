"""Which letters exist in which locales: the folders under THANKLY_TEMPLATES_DIR.

A letter is `templates/<letter>/<locale>/` holding subject.txt, body.txt and body.html;
`_base` and other folders starting with `_` are shared parts, not letters.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

LETTER_FILES = ("subject.txt", "body.txt", "body.html")


def normalise_locale(tag: str) -> str:
    """`ru_RU` and `RU-ru` both become `ru-ru`, so folder names match however CRMs spell it."""
    return tag.strip().replace("_", "-").lower()


@dataclass(frozen=True)
class Catalogue:
    letters: dict[str, frozenset[str]]

    @classmethod
    def scan(cls, templates_dir: Path) -> Catalogue:
        letters: dict[str, frozenset[str]] = {}
        if templates_dir.is_dir():
            for letter_dir in sorted(templates_dir.iterdir()):
                if not letter_dir.is_dir() or letter_dir.name.startswith(("_", ".")):
                    continue
                locales = frozenset(
                    normalise_locale(locale_dir.name)
                    for locale_dir in letter_dir.iterdir()
                    if locale_dir.is_dir() and all((locale_dir / f).is_file() for f in LETTER_FILES)
                )
                if locales:
                    letters[letter_dir.name] = locales
        return cls(letters)

    def has(self, letter: str, locale: str | None = None) -> bool:
        if letter not in self.letters:
            return False
        return locale is None or normalise_locale(locale) in self.letters[letter]

    def resolve_locale(self, letter: str, wanted: str | None, default: str) -> str:
        """`ru-RU` → `ru-ru` if that letter exists, else `ru`, else the default locale."""
        available = self.letters.get(letter, frozenset())
        if wanted:
            tag = normalise_locale(wanted)
            candidates = [tag, tag.split("-", 1)[0]]
            for candidate in candidates:
                if candidate in available:
                    return candidate
        return normalise_locale(default)
