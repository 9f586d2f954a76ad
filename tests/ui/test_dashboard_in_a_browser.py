"""The dashboard in a real browser, on the real stack: `thankly run` as a user starts it,
an SMTP server that is down when a letter goes out, and an admin who signs in with the
printed token, finds the failed letter, replays it with one click and a reason, and sees
it arrive. Then every page at phone and laptop width, checked for sideways scrolling."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.select import Select

from tests.browser import LAPTOP, PHONE, chromium, require_browser, set_width
from tests.conftest import ROOT, TEMPLATES, free_port
from tests.helpers import THANKLY, run_thankly
from tests.smtp_server import Script, smtp_server

OUTAGE = "451 4.3.0 Mail system unavailable, try again later"


@dataclass
class Stack:
    url: str
    dashboard: str
    token: str
    smtp: Script
    var_dir: Path
    env: dict[str, str]
    output: list[str] = field(default_factory=list)


def _read_lines(proc: subprocess.Popen[str], into: list[str]) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        into.append(line)


def _wait_for(
    what: str, check: Callable[[], bool], timeout: float = 30, log: Callable[[], str] = str
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}\n{log()}")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    require_browser()
    folder = tmp_path_factory.mktemp("stack")
    with smtp_server() as (script, smtp_port):
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("THANKLY_")}
        env |= {
            "THANKLY_VAR_DIR": str(folder / "var"),
            "THANKLY_RULES_FILE": str(ROOT / "config" / "rules.demo.yaml"),
            "THANKLY_TEMPLATES_DIR": str(TEMPLATES),
            "THANKLY_SMTP_URL": f"smtp://127.0.0.1:{smtp_port}",
            "THANKLY_MAIL_FROM": "Nordlicht <thanks@nordlicht.example>",
            "THANKLY_SMTP_TRIES": "1",
            "THANKLY_MAX_SEND_ATTEMPTS": "1",  # the outage fails the letter at once
            "THANKLY_SWEEP_INTERVAL_SECONDS": "1",
            "PYTHONUNBUFFERED": "1",  # its lines as it prints them
        }
        proc = subprocess.Popen(
            [*THANKLY, "run", "--port", str(port)],
            env=env,
            cwd=folder,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        output: list[str] = []
        threading.Thread(target=_read_lines, args=(proc, output), daemon=True).start()
        try:
            _wait_for(
                "the dashboard line",
                lambda: any("dashboard" in x for x in output),
                log=lambda: "".join(output),
            )
            line = next(x for x in output if "dashboard" in x)
            found = re.search(r"(http://\S+/ui/)\s+sign in with (\S+) \(generated", line)
            assert found, line
            yield Stack(
                f"http://127.0.0.1:{port}",
                found.group(1),
                found.group(2),
                script,
                folder / "var",
                env,
                output,
            )
        finally:
            proc.terminate()
            proc.wait(timeout=30)


@pytest.fixture(scope="module")
def failed_letter(stack: Stack) -> str:
    """A deal's thank-you, sent while the relay refuses everything: failed."""
    stack.smtp.rcpt_replies.append(OUTAGE)
    sent = run_thankly(
        "event",
        "send",
        "--type",
        "deal.closed",
        "--email",
        "anna@example.org",
        "--name",
        "Anna Ivanova",
        "--url",
        f"{stack.url}/webhooks/generic",
        env={k: v for k, v in stack.env.items() if k.startswith("THANKLY_")},
        timeout=30,
    )
    assert sent.returncode == 0, sent.stdout + sent.stderr
    _wait_for(
        "the letter to fail",
        lambda: _letter_status(stack) == "failed",
        log=lambda: "".join(stack.output),
    )
    return "anna@example.org"


def _letter_status(stack: Stack) -> str | None:
    with sqlite3.connect(stack.var_dir / "thankly.db") as conn:
        row = conn.execute("SELECT status FROM letters ORDER BY id LIMIT 1").fetchone()
    return str(row[0]) if row else None


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    with chromium() as driver:
        yield driver


def sign_in(browser: WebDriver, stack: Stack) -> None:
    browser.delete_all_cookies()
    browser.get(stack.dashboard)
    assert "/ui/login" in browser.current_url
    field = browser.switch_to.active_element  # the token field has the focus: just type
    assert field.get_attribute("name") == "token"
    field.send_keys(stack.token + Keys.ENTER)
    _wait_for("the signed-in page", lambda: "/ui/login" not in browser.current_url)


def test_an_admin_replays_a_letter_that_failed_during_an_smtp_outage(
    stack: Stack, failed_letter: str, browser: WebDriver
) -> None:
    sign_in(browser, stack)
    browser.find_element(By.LINK_TEXT, "Letters").click()
    Select(browser.find_element(By.NAME, "status")).select_by_visible_text("failed")
    browser.find_element(By.CSS_SELECTOR, "form.filters button").click()
    _wait_for("the failed letters", lambda: "status=failed" in browser.current_url)
    rows = browser.find_elements(By.CSS_SELECTOR, "tbody tr")
    [row] = [r for r in rows if failed_letter in r.text]
    assert "failed" in row.text and "Mail system unavailable" in row.text
    row.find_element(By.CSS_SELECTOR, "td a").click()
    assert "451 4.3.0" in browser.find_element(By.CSS_SELECTOR, ".timeline").text
    message_id = browser.find_element(By.CSS_SELECTOR, ".facts code").text
    browser.find_element(By.ID, "replay-reason").send_keys("relay is back")
    browser.find_element(By.XPATH, "//button[text()='Replay']").click()
    notice = browser.find_element(By.CSS_SELECTOR, ".notice").text
    assert "Replayed" in notice
    _wait_for("the letter at the SMTP server", lambda: message_id in stack.smtp.delivered)
    assert stack.smtp.delivered.count(message_id) == 1
    _wait_for("the page to say sent", lambda: _status_after_reload(browser) == "sent")
    timeline = browser.find_element(By.CSS_SELECTOR, ".timeline").text
    assert "admin replay" in timeline and "relay is back" in timeline


def _status_after_reload(browser: WebDriver) -> str:
    browser.refresh()
    return str(browser.find_element(By.CSS_SELECTOR, "h1 .status").text)


PAGES = (
    "/ui/overview",
    "/ui/letters",
    "/ui/letters/1",
    "/ui/upcoming",
    "/ui/events",
    "/ui/rules",
    "/ui/suppressions",
    "/ui/experiments",
)
OVERFLOW = "return [document.documentElement.scrollWidth, window.innerWidth]"


def test_every_page_fits_a_phone_and_a_laptop(
    stack: Stack, failed_letter: str, browser: WebDriver, tmp_path: Path
) -> None:
    sign_in(browser, stack)
    for width in (PHONE, LAPTOP):
        set_width(browser, width)
        for path in PAGES:
            browser.get(stack.url + path)
            assert "Not done" not in browser.title, path
            content, viewport = browser.execute_script(OVERFLOW)
            shot = tmp_path / f"{path.strip('/').replace('/', '-')}-{width[0]}.png"
            browser.save_screenshot(str(shot))
            assert content <= viewport, f"{path} scrolls sideways at {width[0]} px ({content})"
            assert shot.stat().st_size > 1000


def test_the_keyboard_reaches_everything_in_order(
    stack: Stack, failed_letter: str, browser: WebDriver
) -> None:
    sign_in(browser, stack)
    set_width(browser, LAPTOP)
    browser.get(stack.url + "/ui/letters")
    body = browser.find_element(By.TAG_NAME, "body")
    body.send_keys(Keys.TAB)
    first = browser.switch_to.active_element
    assert first.text == "Skip to content"  # the first stop skips the navigation
    first.send_keys(Keys.ENTER)
    seen = []
    for _ in range(40):
        browser.switch_to.active_element.send_keys(Keys.TAB)
        focused = browser.switch_to.active_element
        seen.append((focused.tag_name, focused.get_attribute("name") or focused.text))
        if focused.get_attribute("href") and "/ui/letters/" in str(focused.get_attribute("href")):
            break
    # A date field is three stops (day, month, year) in Chromium: one name each here.
    names = [name for i, (_, name) in enumerate(seen) if i == 0 or seen[i - 1][1] != name]
    # From the content: every filter, the Filter button, then the first letter.
    assert names[:7] == ["status", "letter", "locale", "contact", "since", "until", "Filter"]
    assert seen[-1][0] == "a"
