"""Open pixel, click redirects and one-click unsubscribe, through the HTTP API."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator
from datetime import timedelta
from email.message import EmailMessage
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from typer.testing import CliRunner

from tests.conftest import NOW, SAMPLES
from tests.helpers import all_letters, ingest_doc
from worker.clock import FixedClock
from worker.delivery.send import send_letter
from worker.delivery.senders import MemorySender
from worker.http.app import create_app
from worker.letters.unsubscribe_texts import texts_for
from worker.models import AuditEntry, Click, CrmActivity, LetterStatus, Open, Suppression
from worker.runtime import Runtime
from worker.scheduling import tick
from worker.tracking.hits import PIXEL_GIF, classify_open, click_token
from worker.tracking.tokens import make_token, read_token

SECRET_KEY = "test-secret-key"  # make_settings' THANKLY_SECRET_KEY
FEEDBACK: dict[str, Any] = json.loads((SAMPLES / "feedback_logged.de.json").read_text())

# Real user agents of the clients and proxies that load a tracking pixel.
AGENTS = {
    "apple_mpp": "Mozilla/5.0",
    "gmail_proxy": "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 "
    "(via ggpht.com GoogleImageProxy)",
    "outlook": "Mozilla/4.0 (compatible; ms-office; MSOffice 16)",
    "thunderbird": "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Thunderbird/128.5.0",
    "apple_mail_no_mpp": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko)",
    "curl": "curl/8.5.0",
}


@pytest.mark.parametrize(
    ("agent", "method", "seconds_after_send", "expected"),
    [
        ("apple_mpp", "GET", 3600, ("machine", "Apple Mail Privacy Protection")),
        ("gmail_proxy", "GET", 3600, ("machine", "Google image proxy")),
        ("outlook", "GET", 3600, ("human", None)),
        ("thunderbird", "GET", 3600, ("human", None)),
        ("apple_mail_no_mpp", "GET", 3600, ("human", None)),
        ("curl", "GET", 3600, ("human", None)),  # a person can use curl; nothing says otherwise
        ("thunderbird", "HEAD", 3600, ("machine", "HEAD request")),
        ("thunderbird", "GET", 2, ("machine", "within 5s of sending")),
        (None, "GET", 3600, ("machine", "no user agent")),
    ],
)
def test_open_classification(
    agent: str | None, method: str, seconds_after_send: int, expected: tuple[str, str | None]
) -> None:
    user_agent = AGENTS[agent] if agent else None
    sent = NOW
    assert (
        classify_open(method, user_agent, sent, sent + timedelta(seconds=seconds_after_send), 5)
        == expected
    )


@settings(max_examples=200, deadline=None)
@given(
    position=st.integers(min_value=0, max_value=200),
    char=st.characters(whitelist_categories=("Lu", "Ll", "Nd"), whitelist_characters="-_."),
)
def test_a_tampered_token_never_verifies(position: int, char: str) -> None:
    token = make_token(SECRET_KEY, "click", json.dumps([7, "https://shop.example/book"]))
    index = position % len(token)
    tampered = token[:index] + char + token[index + 1 :]
    if tampered != token:
        assert read_token(SECRET_KEY, "click", tampered) is None


def test_a_token_is_bound_to_its_purpose_and_key() -> None:
    token = make_token(SECRET_KEY, "open", "7")
    assert read_token(SECRET_KEY, "open", token) == "7"
    assert read_token(SECRET_KEY, "unsubscribe", token) is None
    assert read_token("another key", "open", token) is None


# --- through HTTP, with a letter that was really sent ------------------------------------


@pytest.fixture
def sent(runtime: Runtime, clock: FixedClock) -> Iterator[tuple[TestClient, int, EmailMessage]]:
    sender = MemorySender()
    runtime.sender = sender
    [letter] = ingest_doc(runtime, FEEDBACK, "evt_1")
    clock.set(letter.due_at)
    tick.tick(runtime)
    assert send_letter(runtime.delivery(), letter.id) == "sent"
    with TestClient(create_app(runtime), follow_redirects=False) as client:
        yield client, letter.id, sender.sent[0]


def html_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("html",))
    assert part is not None
    return str(part.get_content())


def path_of(url: str) -> str:
    return re.sub(r"^https?://[^/]+", "", url)


def pixel_path(message: EmailMessage) -> str:
    pixel = re.search(r'src="([^"]+\.gif)"', html_of(message))
    assert pixel is not None
    return path_of(pixel.group(1))


def count(runtime: Runtime, model: Any) -> int:
    with runtime.session_factory() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def activity_keys(runtime: Runtime) -> list[str]:
    with runtime.session_factory() as session:
        return sorted(session.scalars(select(CrmActivity.idempotency_key)))


def test_the_letter_carries_a_pixel_and_tracked_links(
    sent: tuple[TestClient, int, EmailMessage], runtime: Runtime
) -> None:
    _, _, message = sent
    html = html_of(message)
    assert re.search(r'<img src="http://127\.0\.0\.1:8000/t/o/[\w.-]+\.gif"', html)
    unsubscribe = message["List-Unsubscribe"].strip("<>")
    assert f'href="{unsubscribe}"' in html  # the unsubscribe link stays direct
    text = message.get_body(preferencelist=("plain",))
    assert text is not None and "/t/" not in str(text.get_content())  # text stays plain


def test_pixel_always_answers_a_gif_and_records_only_real_tokens(
    sent: tuple[TestClient, int, EmailMessage], runtime: Runtime, clock: FixedClock
) -> None:
    client, _, message = sent
    clock.set(clock.now() + timedelta(hours=2))
    for path in (pixel_path(message), "/t/o/forged.gif", "/t/o/" + "A" * 300 + ".gif"):
        response = client.get(path, headers={"user-agent": AGENTS["thunderbird"]})
        assert response.status_code == 200 and response.content == PIXEL_GIF
        assert response.headers["content-type"] == "image/gif"
        assert response.headers["cache-control"].startswith("no-store")
    assert count(runtime, Open) == 1


def test_only_the_first_human_open_reaches_the_crm(
    sent: tuple[TestClient, int, EmailMessage], runtime: Runtime, clock: FixedClock
) -> None:
    client, letter_id, message = sent
    path = pixel_path(message)
    client.get(path, headers={"user-agent": AGENTS["thunderbird"]})  # within 5 s: machine
    client.get(path, headers={"user-agent": AGENTS["apple_mpp"]})
    client.head(path, headers={"user-agent": AGENTS["outlook"]})
    clock.set(clock.now() + timedelta(minutes=30))
    for _ in range(3):
        client.get(path, headers={"user-agent": AGENTS["outlook"]})
    with runtime.session_factory() as session:
        kinds = [o.kind for o in session.scalars(select(Open).order_by(Open.id))]
    assert kinds == ["machine", "machine", "machine", "human", "human", "human"]
    assert activity_keys(runtime) == [f"opened:{letter_id}", f"sent:{letter_id}"]


def test_a_click_redirects_to_the_exact_url_and_is_recorded(
    sent: tuple[TestClient, int, EmailMessage], runtime: Runtime
) -> None:
    client, letter_id, _ = sent
    target = "https://shop.example/book?slot=9&lang=de#top"
    token = click_token(SECRET_KEY, letter_id, target)
    for _ in range(2):
        response = client.get(f"/t/c/{token}")
        assert response.status_code == 302 and response.headers["location"] == target
    assert count(runtime, Click) == 2
    clicked = [k for k in activity_keys(runtime) if k.startswith("clicked:")]
    assert len(clicked) == 1 and clicked[0].startswith(f"clicked:{letter_id}:")  # one CRM entry


@pytest.mark.parametrize(
    "token_for",
    [
        lambda letter_id: "garbage",
        lambda letter_id: click_token("attacker key", letter_id, "https://evil.example"),
        lambda letter_id: make_token(SECRET_KEY, "open", str(letter_id)),  # wrong purpose
        lambda letter_id: click_token(SECRET_KEY, letter_id, "https://shop.example").replace(
            click_token(SECRET_KEY, letter_id, "https://shop.example").split(".")[0],
            click_token(SECRET_KEY, letter_id, "https://evil.example").split(".")[0],
        ),  # payload swapped under a genuine signature
        lambda letter_id: make_token(SECRET_KEY, "click", "https://evil.example"),  # bad shape
    ],
)
def test_no_open_redirect(
    sent: tuple[TestClient, int, EmailMessage], runtime: Runtime, token_for: Any
) -> None:
    client, letter_id, _ = sent
    response = client.get(f"/t/c/{token_for(letter_id)}")
    assert response.status_code == 404 and "location" not in response.headers
    assert count(runtime, Click) == 0


def test_get_never_unsubscribes(
    sent: tuple[TestClient, int, EmailMessage], runtime: Runtime
) -> None:
    client, _, message = sent
    path = path_of(message["List-Unsubscribe"].strip("<>"))
    for _ in range(3):
        page = client.get(path)
        assert page.status_code == 200 and 'method="post"' in page.text
    assert count(runtime, Suppression) == 0


def test_one_click_post_unsubscribes_at_once_and_idempotently(
    sent: tuple[TestClient, int, EmailMessage], runtime: Runtime
) -> None:
    client, letter_id, message = sent
    # A second letter for the same address, still pending: it must not go out.
    other = json.loads(json.dumps(FEEDBACK))
    other["timestamp"] = "2026-12-20T10:00:00Z"
    [pending] = ingest_doc(runtime, other, "evt_2")
    assert pending.status == LetterStatus.SCHEDULED
    path = path_of(message["List-Unsubscribe"].strip("<>"))
    for _ in range(2):
        response = client.post(
            path,
            content="List-Unsubscribe=One-Click",
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert response.status_code == 200 and "Sie sind abgemeldet" in response.text
        assert "set-cookie" not in response.headers and "location" not in response.headers
    assert count(runtime, Suppression) == 1
    statuses = {letter.id: letter.status for letter in all_letters(runtime)}
    assert statuses == {letter_id: LetterStatus.SENT, pending.id: LetterStatus.SUPPRESSED}
    assert "unsubscribed:k.mueller@example.de" in activity_keys(runtime)
    assert len([k for k in activity_keys(runtime) if k.startswith("unsubscribed")]) == 1


def test_a_forged_unsubscribe_link_changes_nothing(
    sent: tuple[TestClient, int, EmailMessage], runtime: Runtime
) -> None:
    client, letter_id, _ = sent
    forged = make_token("attacker key", "unsubscribe", str(letter_id))
    assert client.post(f"/u/{forged}").status_code == 404
    assert client.get(f"/u/{forged}").status_code == 404
    assert count(runtime, Suppression) == 0


def test_letters_show_tells_the_whole_story(
    sent: tuple[TestClient, int, EmailMessage],
    runtime: Runtime,
    clock: FixedClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from worker.cli.main import app

    client, letter_id, message = sent
    clock.set(clock.now() + timedelta(hours=1))
    client.get(pixel_path(message), headers={"user-agent": AGENTS["apple_mpp"]})
    client.get(pixel_path(message), headers={"user-agent": AGENTS["outlook"]})
    client.get(f"/t/c/{click_token(SECRET_KEY, letter_id, 'https://shop.example/book')}")
    monkeypatch.setenv("THANKLY_DATABASE_URL", runtime.engine.url.render_as_string(False))
    result = CliRunner().invoke(app, ["letters", "show", str(letter_id), "--json"])
    story = json.loads(result.stdout)
    assert story["status"] == "sent" and story["message_id"] == message["Message-ID"]
    assert story["opens"] == {"human": 1, "machine": 1} and story["clicks"] == 1
    whats = [e["what"] for e in story["timeline"]]
    assert whats[0] == "planned" and "attempt sent" in whats and "sent" in whats
    assert {
        "open human",
        "open machine",
        "click",
        "crm email.sent",
        "crm email.opened",
        "crm email.clicked",
    } <= set(whats)
    text = CliRunner().invoke(app, ["letters", "show", str(letter_id)])
    assert text.exit_code == 0 and "opens: 1 human, 1 machine; clicks: 1" in text.stdout
    missing = CliRunner().invoke(app, ["letters", "show", "999"])
    assert missing.exit_code == 1 and "no letter #999" in missing.stderr


# --- the unsubscribe page and the plain-text link speak the letter's language ------------

# Native wording each locale must show (written out here, not read from the module, so a
# swapped or missing translation fails): (confirm question, page after POST, text footer).
NATIVE = {
    "en": ("Stop receiving thank-you letters", "You are unsubscribed", "Unsubscribe: "),
    "ru": ("Больше не присылать благодарственные письма", "Вы отписались", "Отписаться: "),
    "de": ("keine Dankesschreiben mehr erhalten", "Sie sind abgemeldet", "Hier abmelden: "),
    "pl": ("nie chcesz już otrzymywać podziękowań", "Adres został wypisany", "Wypisz się: "),
}


def deliver(runtime: Runtime, clock: FixedClock, locale: str) -> tuple[int, EmailMessage]:
    """The feedback letter in `locale`, really sent; (letter id, the message)."""
    sender = MemorySender()
    runtime.sender = sender
    doc = json.loads(json.dumps(FEEDBACK))
    doc["data"]["contact"]["locale"] = locale
    [letter] = ingest_doc(runtime, doc, f"evt_{locale}")
    assert letter.locale == locale
    clock.set(letter.due_at)
    tick.tick(runtime)
    assert send_letter(runtime.delivery(), letter.id) == "sent"
    return letter.id, sender.sent[0]


def text_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


@pytest.mark.parametrize("locale", sorted(NATIVE))
def test_the_unsubscribe_pages_speak_the_letters_language(
    runtime: Runtime, clock: FixedClock, locale: str
) -> None:
    question, done, _ = NATIVE[locale]
    others = [q for other, (q, d, _) in NATIVE.items() if other != locale]
    _, message = deliver(runtime, clock, locale)
    path = path_of(message["List-Unsubscribe"].strip("<>"))
    with TestClient(create_app(runtime)) as client:
        page = client.get(path)
        assert page.status_code == 200 and f'<html lang="{locale}">' in page.text
        assert question in page.text and not any(q in page.text for q in others)
        after = client.post(path)
    assert after.status_code == 200 and f'<html lang="{locale}">' in after.text
    assert done in after.text


@pytest.mark.parametrize("locale", sorted(NATIVE))
def test_the_plain_text_part_ends_with_a_working_unsubscribe_link(
    runtime: Runtime, clock: FixedClock, locale: str
) -> None:
    _, _, footer = NATIVE[locale]
    letter_id, message = deliver(runtime, clock, locale)
    link = message["List-Unsubscribe"].strip("<>")
    text = text_of(message)
    # After the signature (the deal owner's name), in the letter's language, the same URL.
    assert text.rstrip().endswith(footer + link)
    assert text.index("Jonas Weber") < text.index(link)
    with TestClient(create_app(runtime)) as client:
        assert client.post(path_of(link)).status_code == 200
    with runtime.session_factory() as session:
        assert list(session.scalars(select(Suppression.email))) == ["k.mueller@example.de"]
        entry = session.scalars(select(AuditEntry)).one()  # a link unsubscribe is audited
    assert (entry.action, entry.email, entry.letter_id) == (
        "suppress",
        "k.mueller@example.de",
        letter_id,
    )
    assert entry.actor == "recipient (unsubscribe link)"
    # On the letter's timeline it is the recipient's act, not an admin's.
    from worker.admin.timeline import letter_timeline

    story = letter_timeline(runtime.session_factory, letter_id)
    assert story is not None
    whats = [e["what"] for e in story["timeline"]]
    assert "suppress" in whats and "admin suppress" not in whats


def test_a_template_that_shows_the_link_itself_gets_no_second_one() -> None:
    from worker.letters.message import build_message
    from worker.letters.render import Rendered

    url = "https://t.example/u/tok"
    message = build_message(
        rendered=Rendered("Hi", f"Hallo\n\nAbmelden: {url}\n", "<p>Hallo</p>", "de"),
        mail_from="T <t@shop.example>",
        to="a@example.org",
        message_id="<m1@shop.example>",
        date=NOW,
        unsubscribe_url=url,
    )
    assert text_of(message).count(url) == 1


@pytest.mark.parametrize(
    ("locale", "expected"),
    [("ru-RU", "ru"), ("pl_PL", "pl"), ("DE", "de"), ("fr-CA", "en"), (None, "en"), ("", "en")],
)
def test_page_texts_match_locales_like_letter_folders(locale: str | None, expected: str) -> None:
    assert texts_for(locale).lang == expected


def test_page_texts_are_escaped(
    sent: tuple[TestClient, int, EmailMessage], monkeypatch: pytest.MonkeyPatch
) -> None:
    from worker.letters import unsubscribe_texts

    client, _, message = sent
    hostile = dataclasses.replace(
        unsubscribe_texts.TEXTS["de"], confirm_title="<script>x</script>", button='"><b>'
    )
    monkeypatch.setitem(unsubscribe_texts.TEXTS, "de", hostile)
    page = client.get(path_of(message["List-Unsubscribe"].strip("<>"))).text
    assert "<script>" not in page and '"><b>' not in page
    assert "&lt;script&gt;x&lt;/script&gt;" in page
