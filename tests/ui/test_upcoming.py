"""/ui/upcoming: scheduled letters due in the next hours, per day or hour of the viewer's
zone, by letter and locale; held-out and overdue letters left out; choices validated."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient

from tests.conftest import NOW, make_settings
from tests.ui.conftest import client_for
from tests.ui.test_overview import NASTY, add_letters, seed_event
from worker.clock import FixedClock
from worker.queue import RecordingDispatcher
from worker.runtime import Runtime, build_runtime
from worker.ui.pages import TZ_COOKIE

BERLIN = "Europe/Berlin"  # UTC+1 on NOW (20 Nov 2026, 11:05 there)


def later(**kw: float) -> datetime:
    return NOW + timedelta(**kw)


def groups(html: str) -> dict[str, list[tuple[str, str, int, str]]]:
    """Local day or hour -> [(letter, locale, count, link)] as the page shows them."""
    found: dict[str, list[tuple[str, str, int, str]]] = {}
    for body in re.findall(r'<tbody class="group">(.*?)</tbody>', html, re.S):
        key = re.search(r'<time datetime="([^"]+)">', body).group(1)  # type: ignore[union-attr]
        rows = re.findall(
            r'<tr class="row"><td class="wrap"><a href="([^"]*)">(.*?)</a></td>'
            r'<td class="wrap">(.*?)</td><td class="num">([^<]*)</td>',
            body,
        )
        found[key] = [(letter, locale, int(n), href) for href, letter, locale, n in rows]
        subtotal = re.search(r'class="num subtotal">([^<]*)<', body).group(1)  # type: ignore[union-attr]
        assert int(subtotal) == sum(int(n) for *_, n in rows)
    return found


def counts(html: str) -> dict[str, dict[tuple[str, str], int]]:
    return {
        key: {(letter, locale): n for letter, locale, n, _ in rows}
        for key, rows in groups(html).items()
    }


def total(html: str) -> int:
    found = re.search(r'id="total">([\d,]+) letters?', html)
    assert found, "no total"
    return int(found.group(1).replace(",", ""))


def put_letters(runtime: Runtime) -> None:
    event = seed_event(runtime)
    de = {"letter": "feedback_logged", "locale": "de"}
    en = {"letter": "deal_closed", "locale": "en"}
    add_letters(
        runtime,
        event,
        {"status": "scheduled", "due_at": later(hours=5), **de},  # 16:05 in Berlin
        {"status": "scheduled", "due_at": later(hours=5, minutes=30), **de},
        {"status": "scheduled", "due_at": later(hours=12, minutes=50), **en},  # 23:55 there
        {"status": "scheduled", "due_at": later(hours=13), **de},  # 00:05 on the 21st there
        {"status": "scheduled", "due_at": later(hours=47), **en},
        {"status": "scheduled", "due_at": later(hours=48), **en},  # the window's last moment
        # Not counted: past the window, due already (the lag), at now, never sent, claimed.
        {"status": "scheduled", "due_at": later(hours=48, minutes=1), **en},
        {"status": "scheduled", "due_at": later(hours=-1), **en},
        {"status": "scheduled", "due_at": NOW, **en},
        {"status": "held_out", "due_at": later(hours=2), **de},
        {"status": "held_out", "due_at": later(hours=30), **en},
        {"status": "queued", "due_at": later(hours=1), **de},
        {"status": "cancelled", "due_at": later(hours=3), **de},
    )


def test_per_day_of_the_viewers_zone(ui_runtime: Runtime, admin: TestClient) -> None:
    put_letters(ui_runtime)
    admin.cookies.set(TZ_COOKIE, BERLIN)
    html = admin.get("/ui/upcoming?hours=48").text
    assert counts(html) == {
        "2026-11-20": {("deal_closed", "en"): 1, ("feedback_logged", "de"): 2},
        "2026-11-21": {("feedback_logged", "de"): 1},
        "2026-11-22": {("deal_closed", "en"): 2},
    }
    assert total(html) == 6
    by_letter = html.split('<table id="by-letter">', 1)[1].split("</table>", 1)[0]
    assert re.findall(
        r">(\w+)</a></td><td class=\"wrap\">(\w+)</td><td class=\"num\">(\d+)<", by_letter
    ) == [
        ("deal_closed", "en", "3"),
        ("feedback_logged", "de", "3"),
    ]
    # In UTC the letter at 23:05 UTC is still on the 20th, and the 21st has none.
    admin.cookies.set(TZ_COOKIE, "UTC")
    html = admin.get("/ui/upcoming?hours=48").text
    assert counts(html) == {
        "2026-11-20": {("deal_closed", "en"): 1, ("feedback_logged", "de"): 3},
        "2026-11-22": {("deal_closed", "en"): 2},
    }
    assert total(html) == 6


def test_the_window_follows_the_choice(ui_runtime: Runtime, admin: TestClient) -> None:
    put_letters(ui_runtime)
    admin.cookies.set(TZ_COOKIE, BERLIN)
    html = admin.get("/ui/upcoming?hours=24").text
    assert total(html) == 4
    assert set(counts(html)) == {"2026-11-20", "2026-11-21"}
    assert total(admin.get("/ui/upcoming?hours=168").text) == 7  # the one a minute past 48 h
    assert total(admin.get("/ui/upcoming").text) == 6  # 48 hours unless chosen
    assert '<option value="168" selected>' in admin.get("/ui/upcoming?hours=168").text


def test_per_hour_of_the_viewers_zone(ui_runtime: Runtime, admin: TestClient) -> None:
    put_letters(ui_runtime)
    admin.cookies.set(TZ_COOKIE, BERLIN)
    html = admin.get("/ui/upcoming?hours=24&by=hour").text
    assert counts(html) == {
        "2026-11-20T16:00+01:00": {("feedback_logged", "de"): 2},
        "2026-11-20T23:00+01:00": {("deal_closed", "en"): 1},
        "2026-11-21T00:00+01:00": {("feedback_logged", "de"): 1},
    }


def test_hours_of_a_zone_half_an_hour_off_utc(ui_runtime: Runtime, admin: TestClient) -> None:
    """Kolkata is UTC+5:30: 10:20 and 10:40 UTC are one UTC hour but 15:50 and 16:10 there."""
    event = seed_event(ui_runtime)
    add_letters(
        ui_runtime,
        event,
        {"status": "scheduled", "due_at": datetime(2026, 11, 20, 10, 20, tzinfo=UTC)},
        {"status": "scheduled", "due_at": datetime(2026, 11, 20, 10, 40, tzinfo=UTC)},
    )
    admin.cookies.set(TZ_COOKIE, "Asia/Kolkata")
    html = admin.get("/ui/upcoming?hours=24&by=hour").text
    assert {k: sum(v.values()) for k, v in counts(html).items()} == {
        "2026-11-20T15:00+05:30": 1,
        "2026-11-20T16:00+05:30": 1,
    }
    admin.cookies.set(TZ_COOKIE, "UTC")
    html = admin.get("/ui/upcoming?hours=24&by=hour").text
    assert {k: sum(v.values()) for k, v in counts(html).items()} == {"2026-11-20T10:00+00:00": 2}


def test_days_across_the_end_of_summer_time(
    ui_runtime: Runtime, admin: TestClient, clock: FixedClock
) -> None:
    """25 October 2026 is 25 hours long in Berlin: its midnight after is 23:00 UTC."""
    event = seed_event(ui_runtime)
    clock.set(datetime(2026, 10, 24, 12, tzinfo=UTC))
    add_letters(
        ui_runtime,
        event,
        {"status": "scheduled", "due_at": datetime(2026, 10, 24, 21, 30, tzinfo=UTC)},  # 23:30
        {"status": "scheduled", "due_at": datetime(2026, 10, 24, 22, 30, tzinfo=UTC)},  # 00:30
        {"status": "scheduled", "due_at": datetime(2026, 10, 25, 22, 30, tzinfo=UTC)},  # 23:30
        {"status": "scheduled", "due_at": datetime(2026, 10, 25, 23, 30, tzinfo=UTC)},  # 00:30
    )
    admin.cookies.set(TZ_COOKIE, BERLIN)
    html = admin.get("/ui/upcoming?hours=168").text
    assert {k: sum(v.values()) for k, v in counts(html).items()} == {
        "2026-10-24": 1,
        "2026-10-25": 2,
        "2026-10-26": 1,
    }


def test_each_group_links_to_its_letters_and_names_are_escaped(
    ui_runtime: Runtime, admin: TestClient
) -> None:
    event = seed_event(ui_runtime)
    add_letters(
        ui_runtime,
        event,
        {"status": "scheduled", "due_at": later(hours=1), "letter": NASTY, "locale": "de&x"},
    )
    html = admin.get("/ui/upcoming").text
    assert NASTY not in html
    [[(letter, locale, n, href)]] = groups(html).values()
    assert letter == "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;"
    assert (locale, n) == ("de&amp;x", 1)
    link = urlsplit(href.replace("&amp;", "&"))
    assert link.path == "/ui/letters"
    assert parse_qs(link.query) == {"status": ["scheduled"], "letter": [NASTY], "locale": ["de&x"]}
    # The list it links to has that letter.
    listed = admin.get(href.replace("&amp;", "&")).text
    assert "&lt;script&gt;" in listed and "1 letter" in listed


def test_nothing_to_send(ui_runtime: Runtime, admin: TestClient) -> None:
    seed_event(ui_runtime)
    html = admin.get("/ui/upcoming").text
    assert total(html) == 0
    assert "Nothing goes out in the next 48 hours." in html


@pytest.mark.parametrize("query", ["hours=abc", "hours=12", "hours=-48", "by=week", "by=x" * 5])
def test_choices_are_checked(reader: TestClient, query: str) -> None:
    assert reader.get(f"/ui/upcoming?{query}").status_code == 422


def test_signed_out_goes_to_the_login(ui_runtime: Runtime) -> None:
    with client_for(ui_runtime) as client:
        response = client.get("/ui/upcoming?hours=24", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/ui/login?next=/ui/upcoming%3Fhours%3D24"


def test_off_without_an_admin_token(tmp_path: Path, db_url: str, clock: FixedClock) -> None:
    runtime = build_runtime(
        make_settings(tmp_path, db_url), clock=clock, dispatcher=RecordingDispatcher()
    )
    try:
        with client_for(runtime) as client:
            assert client.get("/ui/upcoming", follow_redirects=False).status_code == 404
    finally:
        runtime.engine.dispose()
