"""Every shipped letter laid out by a real browser at phone width (390 px), light and dark.

Headless Chromium (Debian's `chromium` package) loads each letter's HTML, exactly as it is
sent (CSS inlined), in a 390 px frame, and reports what a reader would see: no sideways
scrolling, a one-line button with its padding, the signature's spacing, a hidden
preheader, and dark-mode colours instead of a white card. Without Chromium the tests are
skipped with the reason; they never pass silently.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.browser import require_browser
from tests.conftest import RULES_FILE, SAMPLES, TEMPLATES
from worker.events import validate_event
from worker.letters.catalogue import Catalogue
from worker.letters.compose import letter_setup, rule_for
from worker.letters.render import Renderer, build_context
from worker.letters.template_check import FULL_BRAND
from worker.planning.rules import RulesStore
from worker.settings import Settings

PHONE = 390
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(autouse=True)
def _browser() -> None:
    """Skipped with the reason outside CI when Chromium is missing; failed in CI."""
    require_browser()


# What the probe measures in each letter's frame.
MEASURE = """
window.addEventListener('load', function () {
  var out = {};
  document.querySelectorAll('iframe').forEach(function (frame) {
    var d = frame.contentDocument, w = frame.contentWindow;
    var style = function (sel, prop) {
      var el = d.querySelector(sel); return el ? w.getComputedStyle(el)[prop] : null; };
    var button = d.querySelector('.button');
    var nowrap = Array.prototype.map.call(d.querySelectorAll('.nowrap'), function (el) {
      return el.getClientRects().length; });
    out[frame.id] = {
      width: d.documentElement.scrollWidth,
      button: button ? button.getClientRects().length : 0,
      buttonPadding: style('.button', 'paddingTop'),
      actionMargin: style('.action', 'marginTop'),
      signatureMargin: style('.signature', 'marginTop'),
      preheader: d.querySelector('.preheader').getBoundingClientRect().height,
      fontSize: parseFloat(style('.card p', 'fontSize')),
      card: style('.card', 'backgroundColor'),
      text: style('.card', 'color'),
      nowrapLines: Math.max.apply(null, nowrap.concat([1]))
    };
  });
  document.body.setAttribute('data-metrics', JSON.stringify(out));
});
"""


def letters() -> dict[str, str]:
    """Each letter in each locale rendered as sent, from the richest example event of its kind."""
    rules = RulesStore(RULES_FILE, TEMPLATES).get()
    settings = Settings(mail_from="Nordlicht <thanks@nordlicht.example>")
    renderer = Renderer(TEMPLATES)
    examples = {
        "deal_closed": "deal_closed.de.json",
        "feedback_logged": "feedback_logged.pl.json",
        "feedback_negative": "feedback_negative.en.json",
        "referral_made": "referral_made.ru.json",
    }
    rendered = {}
    for letter, locales in sorted(Catalogue.scan(TEMPLATES).letters.items()):
        event = validate_event(json.loads((SAMPLES / examples[letter]).read_text()))
        setup = letter_setup(
            settings.model_copy(update={"next_step_url": "https://nordlicht.example/book"}),
            FULL_BRAND,
            rules,
            rule_for(rules, letter, event),
        )
        for locale in sorted(locales):
            context = build_context(
                event.model_dump(mode="json"),
                locale,
                "Europe/Berlin",
                setup=setup,
                unsubscribe_url="https://thankly.example/u/tok",
            )
            rendered[f"{letter}-{locale}"] = renderer.render(letter, locale, context).html
    return rendered


def chromium(page: Path, *flags: str, tmp: Path) -> str:
    assert CHROMIUM is not None
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp / 'profile'}",
        "--virtual-time-budget=10000",
        *flags,
        page.as_uri(),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def page_of(frames: dict[str, str], path: Path) -> Path:
    body = "".join(
        f'<iframe id="{name}" style="width:{PHONE}px;height:1500px;border:0;display:block" '
        f'srcdoc="{html.escape(doc, quote=True)}"></iframe>'
        for name, doc in frames.items()
    )
    path.write_text(
        f'<!DOCTYPE html><html><body style="margin:0">{body}<script>{MEASURE}</script>'
        "</body></html>",
        encoding="utf-8",
    )
    return path


def measured(page: Path, tmp: Path, *flags: str) -> dict[str, dict[str, Any]]:
    dom = chromium(page, "--window-size=500,1500", "--dump-dom", *flags, tmp=tmp)
    found = re.search(r'data-metrics="([^"]*)"', dom)
    assert found, dom[-2000:]
    result: dict[str, dict[str, Any]] = json.loads(html.unescape(found.group(1)))
    return result


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return page_of(letters(), tmp_path_factory.mktemp("browser") / "letters.html")


def test_every_letter_reads_on_a_phone(page: Path, tmp_path: Path) -> None:
    metrics = measured(page, tmp_path)
    assert len(metrics) == 16
    for name, m in metrics.items():
        assert m["width"] <= PHONE, f"{name} scrolls sideways at {PHONE} px: {m['width']} px"
        assert m["button"] == 1, f"{name}: the button wraps onto {m['button']} lines"
        # Spacing written in the <style> survives CSS inlining.
        assert (m["buttonPadding"], m["actionMargin"], m["signatureMargin"]) == (
            "12px",
            "24px",
            "24px",
        ), name
        assert m["preheader"] == 0, f"{name}: the preheader shows"
        assert m["fontSize"] >= 16, name
        assert m["nowrapLines"] == 1, f"{name}: an amount or date breaks across lines"
        assert m["card"] == "rgb(255, 255, 255)" and m["text"] == "rgb(34, 34, 34)", name


def test_in_dark_mode_letters_keep_their_own_readable_colours(page: Path, tmp_path: Path) -> None:
    metrics = measured(
        page, tmp_path, "--force-dark-mode", "--blink-settings=forceDarkModeEnabled=false"
    )
    for name, m in metrics.items():
        assert (m["card"], m["text"]) == ("rgb(38, 38, 42)", "rgb(236, 236, 236)"), name


def test_a_screenshot_at_phone_width(tmp_path: Path) -> None:
    one = {"deal_closed-de": letters()["deal_closed-de"]}
    page = page_of(one, tmp_path / "one.html")
    shot = tmp_path / "deal_closed-de.png"
    chromium(page, "--window-size=500,1500", f"--screenshot={shot}", tmp=tmp_path)
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (500, 1500)
    assert len(data) > 20_000  # a laid-out letter, not an empty page
