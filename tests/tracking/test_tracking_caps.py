"""Tracking hits are bounded per letter: the first ones are kept as rows, the rest counted.

A loop of pixel or click requests (a scanner, a broken proxy, someone with curl) must not
grow the database without limit, flood the CRM, or make one reader look like many.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from tests.conftest import SAMPLES, make_settings
from tests.helpers import ingest_doc
from worker.clock import FixedClock
from worker.delivery.send import send_letter
from worker.delivery.senders import MemorySender
from worker.http.app import create_app
from worker.models import Click, CrmActivity, Letter, Open
from worker.queue import RecordingDispatcher
from worker.runtime import Runtime, build_runtime
from worker.scheduling import tick
from worker.tracking.hits import HITS_KEPT_PER_LETTER, PIXEL_GIF, click_token, record_open

SECRET_KEY = "test-secret-key"  # make_settings' THANKLY_SECRET_KEY
FEEDBACK: dict[str, Any] = json.loads((SAMPLES / "feedback_logged.de.json").read_text())
READER = "Mozilla/4.0 (compatible; ms-office; MSOffice 16)"  # a human's mail client
LOOP = HITS_KEPT_PER_LETTER + 12


def make_runtime(tmp_path: Path, db_url: str, clock: FixedClock, **settings: Any) -> Runtime:
    runtime = build_runtime(
        make_settings(tmp_path, db_url, **settings), clock=clock, dispatcher=RecordingDispatcher()
    )
    runtime.sender = MemorySender()
    return runtime


def send(runtime: Runtime, clock: FixedClock) -> tuple[int, str]:
    """The sample letter, really sent, an hour ago; (its id, its pixel's path)."""
    [letter] = ingest_doc(runtime, FEEDBACK, "evt_caps")
    clock.set(letter.due_at)
    tick.tick(runtime)
    assert send_letter(runtime.delivery(), letter.id) == "sent"
    clock.set(clock.now() + timedelta(hours=1))  # past the machine-open window
    sender = runtime.sender
    assert isinstance(sender, MemorySender)
    message: EmailMessage = sender.sent[-1]
    part = message.get_body(preferencelist=("html",))
    assert part is not None
    html = str(part.get_content())
    start = html.index("/t/o/")
    return letter.id, html[start : html.index('"', start)]


@pytest.fixture
def sent(
    tmp_path: Path, db_url: str, clock: FixedClock
) -> Iterator[tuple[Runtime, TestClient, int, str]]:
    runtime = make_runtime(tmp_path, db_url, clock)
    letter_id, pixel = send(runtime, clock)
    with TestClient(create_app(runtime), follow_redirects=False) as client:
        yield runtime, client, letter_id, pixel
    runtime.engine.dispose()


def rows(runtime: Runtime, model: type[Open] | type[Click]) -> int:
    with runtime.session_factory() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def counters(runtime: Runtime, letter_id: int) -> tuple[int, int]:
    with runtime.session_factory() as session:
        letter = session.get_one(Letter, letter_id)
        return letter.extra_opens, letter.extra_clicks


def opened_activities(runtime: Runtime) -> int:
    with runtime.session_factory() as session:
        query = select(func.count()).where(CrmActivity.kind == "email.opened")
        return int(session.scalar(query) or 0)


def test_a_pixel_loop_keeps_the_first_hits_and_counts_the_rest(
    sent: tuple[Runtime, TestClient, int, str],
) -> None:
    runtime, client, letter_id, pixel = sent
    for _ in range(LOOP):
        response = client.get(pixel, headers={"user-agent": READER})
        assert response.status_code == 200 and response.content == PIXEL_GIF
    assert rows(runtime, Open) == HITS_KEPT_PER_LETTER
    assert counters(runtime, letter_id) == (LOOP - HITS_KEPT_PER_LETTER, 0)
    assert opened_activities(runtime) == 1  # the first human open, as before


def test_with_every_open_reported_a_loop_does_not_flood_the_crm(
    tmp_path: Path, db_url: str, clock: FixedClock
) -> None:
    runtime = make_runtime(tmp_path, db_url, clock, crm_opens="all")
    letter_id, pixel = send(runtime, clock)
    with TestClient(create_app(runtime)) as client:
        for _ in range(LOOP):
            assert client.get(pixel, headers={"user-agent": READER}).status_code == 200
    assert opened_activities(runtime) == HITS_KEPT_PER_LETTER
    assert counters(runtime, letter_id) == (LOOP - HITS_KEPT_PER_LETTER, 0)
    runtime.engine.dispose()


def test_a_reader_after_a_machine_loop_is_still_the_first_human_open(
    sent: tuple[Runtime, TestClient, int, str],
) -> None:
    """Machines may use up the kept rows; the first human open is kept and reported anyway,
    and only that one."""
    runtime, client, letter_id, pixel = sent
    for _ in range(HITS_KEPT_PER_LETTER + 3):
        assert client.head(pixel, headers={"user-agent": READER}).status_code == 200
    assert opened_activities(runtime) == 0
    for _ in range(3):
        client.get(pixel, headers={"user-agent": READER})
    with runtime.session_factory() as session:
        kinds = list(session.scalars(select(Open.kind).order_by(Open.id)))
    assert kinds == ["machine"] * HITS_KEPT_PER_LETTER + ["human"]
    assert opened_activities(runtime) == 1
    assert counters(runtime, letter_id) == (3 + 2, 0)


def test_a_click_loop_keeps_the_first_clicks_and_still_redirects(
    sent: tuple[Runtime, TestClient, int, str],
) -> None:
    runtime, client, letter_id, _ = sent
    target = "https://shop.example/book"
    path = f"/t/c/{click_token(SECRET_KEY, letter_id, target)}"
    for _ in range(LOOP):
        response = client.get(path)
        assert response.status_code == 302 and response.headers["location"] == target
    assert rows(runtime, Click) == HITS_KEPT_PER_LETTER
    assert counters(runtime, letter_id) == (0, LOOP - HITS_KEPT_PER_LETTER)
    with runtime.session_factory() as session:
        clicked = session.scalar(select(func.count()).where(CrmActivity.kind == "email.clicked"))
    assert clicked == 1


def test_parallel_hits_never_keep_more_than_the_bound(
    sent: tuple[Runtime, TestClient, int, str], clock: FixedClock
) -> None:
    """Counting the kept rows and adding one is atomic: hits racing for the last free
    places keep exactly the bound, and every other one is counted."""
    runtime, client, letter_id, pixel = sent
    for _ in range(HITS_KEPT_PER_LETTER - 4):
        client.get(pixel, headers={"user-agent": READER})
    start = threading.Barrier(12)
    errors: list[BaseException] = []

    def hit() -> None:
        try:
            start.wait()
            record_open(runtime.session_factory, letter_id, "GET", READER, None, clock.now(), 5)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=hit) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert rows(runtime, Open) == HITS_KEPT_PER_LETTER
    assert counters(runtime, letter_id) == (12 - 4, 0)


def test_letters_show_counts_the_hits_not_kept(
    sent: tuple[Runtime, TestClient, int, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from worker.cli.main import app

    runtime, client, letter_id, pixel = sent
    for _ in range(LOOP):
        client.get(pixel, headers={"user-agent": READER})
    path = f"/t/c/{click_token(SECRET_KEY, letter_id, 'https://shop.example/book')}"
    for _ in range(HITS_KEPT_PER_LETTER + 1):
        client.get(path)
    monkeypatch.setenv("THANKLY_DATABASE_URL", runtime.engine.url.render_as_string(False))
    story = json.loads(
        CliRunner().invoke(app, ["letters", "show", str(letter_id), "--json"]).stdout
    )
    assert story["opens"] == {"human": HITS_KEPT_PER_LETTER, "machine": 0}
    assert (story["extra_opens"], story["extra_clicks"]) == (12, 1)
    text = CliRunner().invoke(app, ["letters", "show", str(letter_id)]).stdout
    lines = [" ".join(line.split()[2:]) for line in text.splitlines()]  # after the time
    assert f"opens not kept 12 counted, beyond the first {HITS_KEPT_PER_LETTER} kept" in lines
    assert f"clicks not kept 1 counted, beyond the first {HITS_KEPT_PER_LETTER} kept" in lines
