"""Changing the <a> start tags of an HTML document, and nothing else.

The document is parsed (stdlib html.parser), so only real elements are seen: text that
merely looks like `href="…"`, comments and style or script content are never links. Each
<a> start tag the caller changes is replaced at its exact place; every other character of
the document stays as it was.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from html.parser import HTMLParser

Attrs = list[tuple[str, str | None]]
# Given an <a>'s attributes (values unescaped), its new attributes, or None to keep it as is.
AnchorEdit = Callable[[Attrs], Attrs | None]


class _Anchors(HTMLParser):
    def __init__(self, edit: AnchorEdit) -> None:
        super().__init__(convert_charrefs=False)
        self._edit = edit
        # (line, column, original tag, replacement)
        self.changes: list[tuple[int, int, str, str]] = []
        self.body_end: tuple[int, int] | None = None

    def handle_starttag(self, tag: str, attrs: Attrs) -> None:
        self._anchor(tag, attrs, closed=False)

    def handle_startendtag(self, tag: str, attrs: Attrs) -> None:
        self._anchor(tag, attrs, closed=True)

    def handle_endtag(self, tag: str) -> None:
        if tag == "body" and self.body_end is None:
            self.body_end = self.getpos()

    def _anchor(self, tag: str, attrs: Attrs, closed: bool) -> None:
        if tag != "a":
            return
        edited = self._edit(attrs)
        original = self.get_starttag_text()
        if edited is None or original is None:
            return
        line, column = self.getpos()
        self.changes.append((line, column, original, start_tag(tag, edited, closed)))


def start_tag(tag: str, attrs: Attrs, closed: bool = False) -> str:
    parts = [tag]
    for name, value in attrs:
        parts.append(name if value is None else f'{name}="{html.escape(value, quote=True)}"')
    return "<" + " ".join(parts) + ("/>" if closed else ">")


def _offsets(document: str) -> list[int]:
    """Where each line starts (html.parser counts lines by LF only). str.find, not a loop
    over characters: that loop was a twentieth of a letter's send."""
    starts = [0]
    at = document.find("\n")
    while at != -1:
        starts.append(at + 1)
        at = document.find("\n", at + 1)
    return starts


def edit_anchors(document: str, edit: AnchorEdit, before_body_end: str = "") -> str:
    """`document` with each <a> start tag `edit` changes rewritten, and `before_body_end`
    placed just before the real </body> (at the end when there is none)."""
    parser = _Anchors(edit)
    parser.feed(document)
    parser.close()
    starts = _offsets(document)
    spliced: list[tuple[int, int, str]] = [
        (starts[line - 1] + column, len(original), new)
        for line, column, original, new in parser.changes
    ]
    if before_body_end:
        end = parser.body_end
        at = starts[end[0] - 1] + end[1] if end is not None else len(document)
        spliced.append((at, 0, before_body_end))
    out, done = [], 0
    for at, length, new in sorted(spliced):
        out.append(document[done:at])
        out.append(new)
        done = at + length
    out.append(document[done:])
    return "".join(out)


def attr(attrs: Attrs, name: str) -> str | None:
    """The first value of attribute `name` (html.parser lower-cases names)."""
    return next((value for key, value in attrs if key == name), None)


# The renderer marks the links its template wrote; click tracking rewrites only marked
# links and removes the mark. CRM data cannot set it: it reaches the HTML escaped.
TRACK_MARK = "data-thankly-track"


def mark_links(document: str, urls: set[str]) -> str:
    """Mark each <a> whose href is one of `urls`; drop any mark found elsewhere."""

    def edit(attrs: Attrs) -> Attrs | None:
        kept = [(name, value) for name, value in attrs if name != TRACK_MARK]
        if attr(attrs, "href") in urls:
            return [*kept, (TRACK_MARK, None)]
        return kept if len(kept) != len(attrs) else None

    return edit_anchors(document, edit)
