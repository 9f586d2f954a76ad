"""The letters' email policy caches header classes and the message picks its own MIME
boundary, for speed; neither may change a byte of what goes out."""

from __future__ import annotations

import email.policy
from datetime import UTC, datetime
from email import message_from_bytes
from email.message import EmailMessage

import pytest

from worker.delivery import senders
from worker.delivery.senders import wire
from worker.letters import message
from worker.letters.message import build_message
from worker.letters.render import Rendered

SENT = datetime(2026, 11, 20, 10, 5, tzinfo=UTC)

CASES = [
    ("Thank you, Anna", "Anna Meyer", "anna@example.org", "Jonas Weber"),
    ("Спасибо за заказ №10023, Ольга — до встречи!", "Ольга", "olga@пример.рф", "Иван Петров"),
    ("Dziękujemy za zamówienie, Łukasz " * 6, "Łukasz", "łukasz@example.pl", "Zofia Wójcik"),
    ("Danke =?utf-8?b?DQpCY2M6IHhAeC5leGFtcGxl?= für alles", "Jürgen", "j@example.de", "=?x?="),
]


def letter(subject: str, to: str, owner: str) -> EmailMessage:
    rendered = Rendered(
        subject,
        "Hallo,\n\nvielen Dank. Ünïcödé ✓\n--boundary-looking line\n",
        "<html><body><p>Vielen Dank ✓</p></body></html>",
        "de",
    )
    return build_message(
        rendered=rendered,
        mail_from="Shop <thanks@shop.example>",
        to=to,
        message_id="<1.abc@shop.example>",
        date=SENT,
        sender_name=owner,
        reply_to="owner@shop.example",
        reply_name=owner,
        unsubscribe_url="https://thankly.example/u/token",
    )


@pytest.mark.parametrize(("subject", "name", "to", "owner"), CASES)
def test_a_letter_is_written_byte_for_byte_as_the_stock_policies_write_it(
    subject: str, name: str, to: str, owner: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ours = letter(subject, to, owner)
    monkeypatch.setattr(message, "POLICY", email.policy.default)
    monkeypatch.setattr(senders, "SMTP_POLICY", email.policy.SMTP)
    monkeypatch.setattr(senders, "SMTPUTF8_POLICY", email.policy.SMTPUTF8)
    stock = letter(subject, to, owner)
    assert ours.policy is not stock.policy
    stock.set_boundary(str(ours.get_boundary()))  # the one random part of a message
    written = wire(ours, "thanks@shop.example", to)
    assert written.data == wire(stock, "thanks@shop.example", to).data
    assert b"\r\nBcc:" not in written.data


def test_each_letter_has_its_own_boundary_and_it_appears_only_as_the_separator() -> None:
    first, second = (letter(*CASES[1][0:1], "a@example.org", "Jonas") for _ in range(2))
    boundary = str(first.get_boundary())
    assert boundary != second.get_boundary()
    data = wire(first, "thanks@shop.example", "a@example.org").data
    lines = data.split(b"\r\n")
    separators = [line for line in lines if boundary.encode() in line]
    assert separators[1:] == [b"--" + boundary.encode()] * 2 + [b"--" + boundary.encode() + b"--"]
    parsed = message_from_bytes(data, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    assert [part.get_content_type() for part in parsed.iter_parts()] == ["text/plain", "text/html"]
    body = parsed.get_body(("plain",))
    assert body is not None and "--boundary-looking line" in body.get_content()
