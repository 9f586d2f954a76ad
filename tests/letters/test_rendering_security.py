"""CRM strings are data: they cannot inject headers, markup, template code or links."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import SAMPLES, TEMPLATES
from tests.helpers import write_letter
from worker.letters.context import LetterSetup, safe_url
from worker.letters.message import build_message
from worker.letters.render import Renderer, build_context, one_line

RENDERER = Renderer(TEMPLATES)
DEAL: dict[str, Any] = json.loads((SAMPLES / "deal_closed.ru.json").read_text())

CORPUS = [
    "Anna\r\nBcc: victim@example.org",
    "Anna\nSubject: hacked",
    "{{ 7 * 7 }}",
    "{% for x in range(9999999) %}x{% endfor %}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "Ǎ" * 200,
    "\u202eevil\u202c",
]


def letter_for(name: str, next_step_url: str | None = None) -> tuple[Any, EmailMessage]:
    doc = copy.deepcopy(DEAL)
    doc["data"]["contact"]["first_name"] = name
    doc["data"]["deal"]["title"] = name
    doc["data"]["owner"]["name"] = name
    context = build_context(
        doc,
        "en",
        "Europe/Berlin",
        setup=LetterSetup(next_step_url=next_step_url),
        unsubscribe_url="https://t.example/u/x",
    )
    rendered = RENDERER.render("deal_closed", "en", context)
    message = build_message(
        rendered=rendered,
        mail_from="Team <team@shop.example>",
        to="anna@example.org",
        message_id="<m1@shop.example>",
        date=datetime(2026, 11, 23, 9, tzinfo=UTC),
        sender_name=name,
        reply_to="ivan@seller.example",
        reply_name=name,
        unsubscribe_url="https://t.example/u/x",
    )
    return rendered, message


@pytest.mark.parametrize("name", CORPUS)
def test_injection_corpus(name: str) -> None:
    rendered, message = letter_for(name)
    wire = message.as_bytes(policy=policy.SMTP)
    parsed = message_from_bytes(wire, policy=policy.default)
    # Headers: exactly the ones we set, none smuggled in by CR/LF in CRM data.
    assert "Bcc" not in parsed
    assert len(parsed.get_all("Subject") or []) == 1  # "Subject: hacked" stays inside it
    assert sorted(set(parsed.keys())) == sorted(
        {
            "From",
            "To",
            "Reply-To",
            "Subject",
            "Date",
            "Message-ID",
            "List-Unsubscribe",
            "List-Unsubscribe-Post",
            "MIME-Version",
            "Content-Type",
        }
    )
    assert "\n" not in rendered.subject and "\r" not in rendered.subject
    assert len(rendered.subject) <= 60
    # Template syntax in data is shown, never run.
    assert "49" not in rendered.text.replace("98765", "")
    if name.startswith(("{{", "{%")):
        assert name in rendered.text  # shown verbatim, so it cannot have been run
    # Markup in data is escaped in HTML and left as text in the plain part.
    assert "<script>" not in rendered.html and "<img" not in rendered.html
    if name.startswith("<script>"):
        assert "&lt;script&gt;" in rendered.html and "<script>" in rendered.text


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "data:text/html,x",
        "//evil.example",
        "https://ok.example/a b",
        'https://ok.example/"onmouseover="x',
    ],
)
def test_only_plain_http_links_reach_a_letter(url: str) -> None:
    assert safe_url(url) is None
    rendered, _ = letter_for("Anna", next_step_url=url)
    assert url not in rendered.html


def test_a_sandboxed_template_cannot_reach_python_internals(tmp_path: Any) -> None:
    from worker.letters.render import RenderError

    write_letter(tmp_path, "bad", "{{ contact.__class__.__mro__ }}")
    with pytest.raises(RenderError):
        Renderer(tmp_path).render("bad", "en", build_context(DEAL, "en", "UTC"))


def test_the_message_carries_the_contracted_headers() -> None:
    _, message = letter_for("Anna")
    assert message.get_content_type() == "multipart/alternative"
    parts = [p.get_content_type() for p in message.iter_parts()]
    assert parts == ["text/plain", "text/html"]
    assert str(message["From"]) == "Anna <team@shop.example>"  # owner's name, our address
    assert str(message["Reply-To"]) == "Anna <ivan@seller.example>"
    assert message["Message-ID"] == "<m1@shop.example>"
    assert message["Date"] == "Mon, 23 Nov 2026 09:00:00 +0000"
    assert message["List-Unsubscribe"] == "<https://t.example/u/x>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=300))
def test_one_line_never_leaves_a_line_break(text: str) -> None:
    cleaned = one_line(text)
    assert "\n" not in cleaned and "\r" not in cleaned and cleaned == cleaned.strip()
