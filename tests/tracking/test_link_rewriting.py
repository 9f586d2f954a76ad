"""Click tracking rewrites only the links a template put in a letter, never CRM text.

CRM strings reach the HTML as escaped text; CSS inlining writes text quotes back out
unescaped, so anything that looks for `href="…"` in the serialized HTML finds the CRM's
text too. These tests hold the rewriter to real <a href> attributes of the template's own
links.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from email.message import EmailMessage
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import SAMPLES, TEMPLATES, make_settings
from tests.helpers import ingest_doc, write_letter
from worker.clock import FixedClock
from worker.delivery.send import send_letter
from worker.delivery.senders import MemorySender
from worker.http.app import create_app
from worker.letters.context import LetterSetup
from worker.letters.render import Renderer, build_context
from worker.queue import RecordingDispatcher
from worker.runtime import Runtime, build_runtime
from worker.scheduling import tick
from worker.tracking.hits import instrument_html, read_click

SECRET_KEY = "test-secret-key"  # make_settings' THANKLY_SECRET_KEY
PUBLIC = "http://127.0.0.1:8000"
NEXT_STEP = "https://book.example/call?with=team&len=20"
UNSUBSCRIBE = f"{PUBLIC}/u/tok"
FEEDBACK: dict[str, Any] = json.loads((SAMPLES / "feedback_logged.en.json").read_text())
# Link rewriting does not depend on the database: SQLite is enough.
sqlite_only = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


class Page(HTMLParser):
    """What a mail client sees: the anchors (href, text) and the document's text."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.anchors: list[tuple[str, str]] = []
        self.text: list[str] = []
        self._anchor: list[str] | None = None
        self._href = ""
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._href, self._anchor = dict(attrs).get("href") or "", []

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._anchor is not None:
            self.anchors.append((self._href, "".join(self._anchor).strip()))
            self._anchor = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._anchor is not None:
            self._anchor.append(data)

    @property
    def all_text(self) -> str:
        return " ".join("".join(self.text).split())


def tracked_targets(html: str) -> list[str]:
    """Where each /t/c/ link in the HTML leads (its signed target)."""
    targets = []
    for href, _ in Page(html).anchors:
        if href.startswith(f"{PUBLIC}/t/c/"):
            found = read_click(SECRET_KEY, href.rsplit("/", 1)[1])
            assert found is not None
            targets.append(found[1])
    return targets


def feedback(first_name: str | None = None, text: str | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(json.dumps(FEEDBACK))
    if first_name is not None:
        doc["data"]["contact"]["first_name"] = first_name
    if text is not None:
        doc["data"]["feedback"]["text"] = text
    return doc


@pytest.fixture
def booking(tmp_path: Path, db_url: str, clock: FixedClock) -> Iterator[Runtime]:
    """A runtime whose letters offer a next step (THANKLY_NEXT_STEP_URL)."""
    settings_ = make_settings(tmp_path, db_url, next_step_url=NEXT_STEP)
    runtime = build_runtime(settings_, clock=clock, dispatcher=RecordingDispatcher())
    runtime.sender = MemorySender()
    yield runtime
    runtime.engine.dispose()


def send(runtime: Runtime, clock: FixedClock, doc: dict[str, Any]) -> str:
    """The event's letter, really sent; the HTML part as the recipient gets it."""
    [letter] = ingest_doc(runtime, doc, "evt_links")
    clock.set(letter.due_at)
    tick.tick(runtime)
    assert send_letter(runtime.delivery(), letter.id) == "sent"
    sender = runtime.sender
    assert isinstance(sender, MemorySender)
    message: EmailMessage = sender.sent[-1]
    part = message.get_body(preferencelist=("html",))
    assert part is not None
    return str(part.get_content())


@sqlite_only
def test_feedback_text_that_looks_like_a_link_never_becomes_one(
    booking: Runtime, clock: FixedClock
) -> None:
    html = send(booking, clock, feedback(text='see href="https://evil.example/login"'))
    # The only tracked link is the template's button; the text stays text, quoted as written.
    assert tracked_targets(html) == [NEXT_STEP]
    assert "evil.example" not in "".join(href for href, _ in Page(html).anchors)
    assert 'see href="https://evil.example/login"' in Page(html).all_text


@sqlite_only
def test_a_first_name_with_an_open_href_does_not_swallow_the_letter(
    booking: Runtime, clock: FixedClock
) -> None:
    html = send(booking, clock, feedback(first_name='Href="https://x'))
    page = Page(html)
    assert 'Dear Href="https://x,' in page.all_text
    assert "Thank you for taking the time to tell us how things are going" in page.all_text
    assert "Kind regards, Sarah Mitchell" in page.all_text
    hrefs = [href for href, _ in page.anchors]
    assert len(hrefs) == 2 and hrefs[1].startswith(f"{PUBLIC}/u/")  # button, unsubscribe
    assert tracked_targets(html) == [NEXT_STEP]


@sqlite_only
def test_the_next_step_button_is_tracked_and_redirects(booking: Runtime, clock: FixedClock) -> None:
    html = send(booking, clock, feedback())
    [button] = [href for href, text in Page(html).anchors if text.startswith("Book a time")]
    assert button.startswith(f"{PUBLIC}/t/c/")
    with TestClient(create_app(booking), follow_redirects=False) as client:
        response = client.get(button.removeprefix(PUBLIC))
    assert response.status_code == 302 and response.headers["location"] == NEXT_STEP
    # No marker the rewriter works with is left in what the recipient gets.
    assert "data-thankly" not in html


def render_custom(tmp_path: Path, body_html: str, doc: dict[str, Any]) -> str:
    """A one-off letter rendered and instrumented as sending does."""
    write_letter(tmp_path, "custom", "Thanks", html=body_html)
    context = build_context(
        doc, "en", "UTC", setup=LetterSetup(next_step_url=NEXT_STEP), unsubscribe_url=UNSUBSCRIBE
    )
    rendered = Renderer(tmp_path).render("custom", "en", context)
    return instrument_html(rendered.html, 7, SECRET_KEY, PUBLIC, keep=UNSUBSCRIBE)


def test_only_urls_the_template_wrote_are_tracked(tmp_path: Path) -> None:
    """A literal link and next_step_url are tracked; an href filled from CRM data is left
    as it is (a signed redirect to a CRM-chosen URL would be an open redirect)."""
    body = (
        "<p>{{ contact.first_name }}</p>"
        '<a href="https://docs.example/start?a=1&amp;b=2">Docs</a>'
        '<a href="{{ next_step_url }}">Book</a>'
        '<a href="{{ feedback.text }}">Yours</a>'
        '<a href="https://docs.example/{{ contact.first_name }}">Half</a>'
        '<a href="{{ unsubscribe_url }}">Unsubscribe</a>'
    )
    doc = feedback(first_name="Anna", text="https://evil.example/login")
    html = render_custom(tmp_path, body, doc)
    assert tracked_targets(html) == ["https://docs.example/start?a=1&b=2", NEXT_STEP]
    hrefs = [href for href, _ in Page(html).anchors]
    assert hrefs[2:] == ["https://evil.example/login", "https://docs.example/Anna", UNSUBSCRIBE]


def test_a_link_added_to_a_template_by_an_edit_is_tracked_without_a_restart(
    tmp_path: Path,
) -> None:
    """The literal links a template holds are worked out once per version of its file:
    an edit's new link is tracked by the same renderer, a removed one no longer is."""
    write_letter(tmp_path, "custom", "Thanks", html='<a href="https://docs.example/a">A</a>')
    renderer = Renderer(tmp_path)
    context = build_context(feedback(), "en", "UTC", unsubscribe_url=UNSUBSCRIBE)

    def tracked() -> list[str]:
        html = renderer.render("custom", "en", context).html
        return tracked_targets(instrument_html(html, 7, SECRET_KEY, PUBLIC, keep=UNSUBSCRIBE))

    assert tracked() == ["https://docs.example/a"]
    assert tracked() == ["https://docs.example/a"]  # from the remembered links
    body = tmp_path / "custom" / "en" / "body.html"
    body.write_text('<a href="https://docs.example/b">B</a>')
    os.utime(body, (body.stat().st_mtime + 5,) * 2)  # a later edit, whatever the clock says
    assert tracked() == ["https://docs.example/b"]


def test_a_template_link_inside_text_or_comments_is_not_an_anchor(tmp_path: Path) -> None:
    body = (
        '<!-- <a href="https://docs.example/">old</a> -->'
        "<p>{{ feedback.text }}</p>"
        '<a href="https://docs.example/">Docs</a>'
    )
    html = render_custom(tmp_path, body, feedback(text='<a href="https://docs.example/">x</a>'))
    assert tracked_targets(html) == ["https://docs.example/"]
    assert '<!-- <a href="https://docs.example/">old</a> -->' in html


# Pieces of markup, so that hostile shapes come up often, and single characters between.
HOSTILE = st.lists(
    st.sampled_from([*"<>\"'=&;/ :.ahx#{}%\n", "href=", 'href="', "https://", "</", "<a ", "-->"]),
    max_size=20,
).map("".join)


@settings(max_examples=60, deadline=None)
@given(first_name=HOSTILE, text=HOSTILE)
def test_no_crm_text_ever_changes_the_tracked_links_or_the_letter(
    first_name: str, text: str
) -> None:
    """Whatever the CRM writes, the shipped letter has exactly its button tracked, its
    unsubscribe link direct, and all of its own text."""
    renderer = Renderer(TEMPLATES)
    doc = feedback(first_name=first_name, text=text)
    context = build_context(
        doc, "en", "UTC", setup=LetterSetup(next_step_url=NEXT_STEP), unsubscribe_url=UNSUBSCRIBE
    )
    rendered = renderer.render("feedback_logged", "en", context)
    html = instrument_html(rendered.html, 7, SECRET_KEY, PUBLIC, keep=UNSUBSCRIBE)
    page = Page(html)
    assert tracked_targets(html) == [NEXT_STEP]
    assert [href for href, _ in page.anchors][1:] == [UNSUBSCRIBE]
    assert "We read every piece of feedback ourselves" in page.all_text
    assert "Kind regards, Sarah Mitchell" in page.all_text


def test_the_mailto_next_step_is_tracked_too() -> None:
    """With no booking page configured, the button writes to the owner: the click is
    counted, then the signed redirect opens the reader's mail program."""
    doc = feedback()
    context = build_context(
        doc,
        "en",
        "UTC",
        setup=LetterSetup(mail_from="T <t@shop.example>"),
        unsubscribe_url=UNSUBSCRIBE,
    )
    owner = doc["data"]["owner"]["email"]
    assert context["next_step"]["url"] == f"mailto:{owner}"
    rendered = Renderer(TEMPLATES).render("feedback_logged", "en", context)
    html = instrument_html(rendered.html, 7, SECRET_KEY, PUBLIC, keep=UNSUBSCRIBE)
    [target] = tracked_targets(html)
    assert target == f"mailto:{owner}"
    [button] = [h for h, text in Page(html).anchors if text == "Reply to this letter"]
    found = read_click(SECRET_KEY, button.removeprefix(f"{PUBLIC}/t/c/"))
    assert found == (7, f"mailto:{owner}")


@settings(max_examples=200)
@given(
    lines=st.lists(
        st.tuples(st.text(alphabet="ab \t\r\u00e9\u2028", max_size=12), st.booleans()),
        max_size=12,
    )
)
def test_each_anchor_is_rewritten_in_its_exact_place_whatever_the_line_breaks(
    lines: list[tuple[str, bool]],
) -> None:
    from worker.tracking.html_links import edit_anchors

    document = "\n".join(text + ('<a href="old">x</a>' if link else "") for text, link in lines)

    def swap(attrs: list[tuple[str, str | None]]) -> list[tuple[str, str | None]]:
        return [("href", "new")]

    assert edit_anchors(document, swap) == document.replace('href="old"', 'href="new"')
