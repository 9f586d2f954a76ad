"""Who "we" are: the brand file, its THANKLY_BRAND_* overrides, and the headers it sets."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.conftest import SAMPLES, TEMPLATES
from worker.events import validate_event
from worker.letters.brand import Brand, BrandError, BrandStore, parse_brand
from worker.letters.compose import compose
from worker.letters.context import LetterSetup
from worker.letters.render import Renderer, build_context
from worker.settings import Settings

BRAND_YAML = """\
company: Nordlicht Software GmbH
sender_name: Nordlicht Software
reply_to: hello@nordlicht.example
address: [Hafenstraße 12, 20457 Hamburg]
legal: [Amtsgericht Hamburg HRB 123456]
signer: {name: Katrin Weber, role: Customer Success, phone: "+49 40 123456"}
referral_reward: {de: einen Gutschein über 50 €, "*": a €50 voucher}
"""


def test_the_file_is_read_and_the_environment_overrides_it(tmp_path: Path) -> None:
    path = tmp_path / "brand.yaml"
    path.write_text(BRAND_YAML)
    brand = parse_brand(
        path, {"THANKLY_BRAND_SIGNER_NAME": "Jonas Berg", "THANKLY_BRAND_LEGAL": "A | B"}
    )
    assert brand.company == "Nordlicht Software GmbH"
    assert (brand.signer.name, brand.signer.role) == ("Jonas Berg", "Customer Success")
    assert brand.legal == ["A", "B"]
    assert brand.reward("de-AT") == "einen Gutschein über 50 €"
    assert brand.reward("pl") == "a €50 voucher"


def test_without_a_file_the_brand_comes_from_the_environment_alone(tmp_path: Path) -> None:
    brand = parse_brand(tmp_path / "missing.yaml", {"THANKLY_BRAND_COMPANY": "Kowalski Sp. z o.o."})
    assert brand.company == "Kowalski Sp. z o.o." and brand.signer.name is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("company: [1, 2]", "company"),
        ("reply_to: not-an-address", "reply_to"),
        ("logo_url: http://plain.example/logo.png", "logo_url"),
        ("signer: {name: A, title: B}", "signer.title"),
        ("- a list", "must map fields"),
    ],
)
def test_a_brand_that_does_not_validate_says_where(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "brand.yaml"
    path.write_text(text)
    with pytest.raises(BrandError, match=message):
        parse_brand(path, {})


def test_a_broken_edit_keeps_the_last_good_brand(tmp_path: Path) -> None:
    path = tmp_path / "brand.yaml"
    path.write_text(BRAND_YAML)
    store = BrandStore(path, {})
    good = store.get()
    path.write_text("reply_to: nope")
    os.utime(path, ns=(path.stat().st_mtime_ns + 10**9,) * 2)
    assert store.get() is good
    path.write_text("company: Neu GmbH")
    os.utime(path, ns=(path.stat().st_mtime_ns + 2 * 10**9,) * 2)
    assert store.get().company == "Neu GmbH"


def message_for(event: dict, brand: Brand, mail_from: str = "Shop <thanks@shop.example>"):  # type: ignore[no-untyped-def, type-arg]
    settings = Settings(mail_from=mail_from)
    parsed = validate_event(event)
    context = build_context(
        parsed.model_dump(mode="json"),
        "en",
        "UTC",
        setup=LetterSetup(brand=brand, mail_from=mail_from),
        unsubscribe_url="https://t.example/u/x",
    )
    rendered = Renderer(TEMPLATES).render("deal_closed", "en", context)
    return compose(
        rendered,
        parsed,
        settings,
        brand,
        to="anna@example.org",
        message_id="<m@shop.example>",
        date=datetime(2026, 11, 23, 9, tzinfo=UTC),
        unsubscribe_url="https://t.example/u/x",
        tracking=None,
    )


def test_reply_to_is_the_owner_else_the_brand_reply_address() -> None:
    event = json.loads((SAMPLES / "deal_closed.ru.json").read_text())
    brand = Brand(sender_name="Nordlicht", reply_to="hello@nordlicht.example")
    with_owner = message_for(event, brand)
    assert str(with_owner["From"]) == "Иван Петров <thanks@shop.example>"
    assert str(with_owner["Reply-To"]) == "Иван Петров <ivan.petrov@seller.example>"
    del event["data"]["owner"]
    without = message_for(event, brand)
    assert str(without["From"]) == "Nordlicht <thanks@shop.example>"
    assert str(without["Reply-To"]) == "Nordlicht <hello@nordlicht.example>"
    # Nothing configured: no Reply-To (replies go to the From address, a real one).
    bare = message_for(event, Brand())
    assert bare["Reply-To"] is None and str(bare["From"]) == "Shop <thanks@shop.example>"


def test_every_letter_has_a_clickable_next_step_even_with_nothing_configured() -> None:
    event = json.loads((SAMPLES / "deal_closed.ru.json").read_text())
    del event["data"]["owner"]
    part = message_for(event, Brand()).get_body(("html",))
    assert part is not None
    html = part.get_content()
    assert 'href="mailto:thanks@shop.example"' in html
    assert "Reply to this letter" in html


def test_the_placeholder_sender_is_refused_only_where_letters_really_leave() -> None:
    assert Settings().mail_from_problem() is None  # embedded: letters go to var/outbox/
    smtp = Settings(smtp_url="smtp://mail.example:587")
    assert "THANKLY_MAIL_FROM is thankly@localhost" in (smtp.mail_from_problem() or "")
    broker = Settings(broker_url="redis://127.0.0.1:6379/0")
    assert broker.mail_from_problem() is not None
    real = Settings(smtp_url="smtp://mail.example:587", mail_from="Shop <thanks@shop.example>")
    assert real.mail_from_problem() is None
