"""/ui/overview: the numbers equal what the test put in the database, split at the viewer's
midnight; scheduler lag, the CRM outbox by destination, rates; escaped text; access."""

from __future__ import annotations

import itertools
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import delete, insert

from tests.admin.test_admin import FEEDBACK
from tests.conftest import NOW, make_settings
from tests.helpers import ingest_doc, recorded_statements
from tests.ui.conftest import ADMIN_TOKEN, client_for, sign_in
from worker.clock import FixedClock
from worker.crm.adapters import CrmRouter, LogCrm
from worker.models import Click, CrmActivity, Letter, Open
from worker.queue import RecordingDispatcher
from worker.runtime import Runtime, build_runtime
from worker.ui.pages import TZ_COOKIE

NASTY = '<script>alert("x")</script>'
_SEQ = itertools.count(1)


# --- putting letters and activities in ---------------------------------------------------


def seed_event(runtime: Runtime) -> int:
    """An event for letters to belong to, with nothing else left behind by planning it."""
    [letter] = ingest_doc(runtime, FEEDBACK, f"evt_seed_{next(_SEQ)}")
    with runtime.session_factory.begin() as session:
        session.execute(delete(CrmActivity))
        session.execute(delete(Letter))
    return letter.event_id


def add_letters(runtime: Runtime, event_id: int, *rows: dict[str, Any]) -> list[int]:
    """Letters as given (status, due_at, sent_at, created_at, updated_at…), the rest filled."""
    ids = []
    values = []
    for row in rows:
        n = next(_SEQ)
        at = row.get("updated_at") or row.get("sent_at") or row.get("due_at") or NOW
        values.append(
            {
                "id": n,
                "event_id": event_id,
                "rule": f"rule{n}",
                "letter": "feedback_logged",
                "locale": "de",
                "contact_email": f"c{n}@example.org",
                "status": "scheduled",
                "due_at": at,
                "message_id": f"<{n}@test>",
                "created_at": at,
                "updated_at": at,
            }
            | row
        )
        ids.append(n)
    if values:
        with runtime.session_factory.begin() as session:
            session.execute(insert(Letter), values)
    return ids


def add_activities(runtime: Runtime, *rows: tuple[str | None, str, datetime]) -> None:
    """(payload's data.source, status, created_at) per activity."""
    values = []
    for source, status, created in rows:
        n = next(_SEQ)
        data: dict[str, Any] = {} if source is None else {"source": source}
        values.append(
            {
                "kind": "email.sent",
                "idempotency_key": f"key-{n}",
                "payload": {"type": "email.sent", "data": data},
                "status": status,
                "attempts": 0,
                "next_attempt_at": created,
                "created_at": created,
                "updated_at": created,
            }
        )
    with runtime.session_factory.begin() as session:
        session.execute(insert(CrmActivity), values)


# --- reading the page --------------------------------------------------------------------


def states(html: str) -> dict[str, tuple[int, int]]:
    """State -> (today, last 30 days) as the page shows them."""
    found = re.findall(
        r'<tr id="state-(\w+)">.*?class="num today">([^<]*)<.*?class="num period">([^<]*)<',
        html,
        re.S,
    )
    return {state: (as_int(today), as_int(period)) for state, today, period in found}


def as_int(text: str) -> int:
    return int(text.replace(",", "").replace("\u202f", "").replace("\xa0", ""))


def day_row(html: str, day: str) -> tuple[int, int]:
    """(sent, failed) on the viewer's `day` (YYYY-MM-DD) in the table under the chart."""
    found = re.search(
        rf'<time datetime="{day}">[^<]*</time></th><td class="num">([^<]*)</td>'
        r'<td class="num">([^<]*)</td>',
        html,
    )
    assert found, f"no row for {day}"
    return as_int(found.group(1)), as_int(found.group(2))


def table_rows(html: str, table_id: str) -> list[list[str]]:
    body = html.split(f'<table id="{table_id}">', 1)[1].split("</table>", 1)[0]
    body = body.split("<tbody>", 1)[1]
    return [
        [cell.strip() for cell in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S)]
        for row in re.findall(r"<tr>(.*?)</tr>", body, re.S)
    ]


def ago(**kw: float) -> datetime:
    return NOW - timedelta(**kw)


NY = "America/New_York"  # UTC-5 on NOW (20 Nov 2026), UTC-4 before 1 Nov: a DST change inside


# --- access ------------------------------------------------------------------------------


def test_signed_out_goes_to_the_login(ui_runtime: Runtime) -> None:
    with client_for(ui_runtime) as client:
        response = client.get("/ui/overview", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/ui/login?next=/ui/overview"


def test_off_without_an_admin_token(tmp_path: Path, db_url: str, clock: FixedClock) -> None:
    runtime = build_runtime(
        make_settings(tmp_path, db_url), clock=clock, dispatcher=RecordingDispatcher()
    )
    try:
        with client_for(runtime) as client:
            assert client.get("/ui/overview", follow_redirects=False).status_code == 404
    finally:
        runtime.engine.dispose()


def test_the_read_only_viewer_sees_it(reader: TestClient) -> None:
    response = reader.get("/ui/overview")
    assert response.status_code == 200
    assert "script-src" not in response.headers["content-security-policy"]
    assert "<script" not in response.text
    assert '<link rel="stylesheet" href="/ui/static/overview.css">' in response.text
    assert reader.get("/ui/static/overview.css").status_code == 200


# --- the numbers -------------------------------------------------------------------------


def put_letters(runtime: Runtime) -> None:
    event = seed_event(runtime)
    add_letters(
        runtime,
        event,
        # Sent: today everywhere; 04:30 UTC today is 23:30 yesterday in New York; 22 Oct
        # 04:30 UTC is New York's first day of the 30 (00:30 EDT), 03:30 UTC the day before.
        {"status": "sent", "sent_at": ago(minutes=10)},
        {"status": "sent", "sent_at": datetime(2026, 11, 20, 4, 30, tzinfo=UTC)},
        {"status": "sent", "sent_at": datetime(2026, 10, 22, 4, 30, tzinfo=UTC)},
        {"status": "sent", "sent_at": datetime(2026, 10, 22, 3, 30, tzinfo=UTC)},
        {"status": "sent", "sent_at": datetime(2026, 10, 21, 12, tzinfo=UTC)},
        # Made 40 days ago, sent today: counted when it was sent, not when it was made.
        {"status": "sent", "sent_at": ago(hours=2), "created_at": ago(days=40)},
        {"status": "failed", "updated_at": ago(hours=1)},
        {"status": "failed", "updated_at": ago(days=3)},
        {"status": "unknown", "updated_at": ago(hours=2)},
        {"status": "suppressed", "updated_at": ago(days=5)},
        # Held out: on the day it would have gone; one still to come is not counted yet.
        {"status": "held_out", "due_at": ago(hours=1), "updated_at": ago(days=2)},
        {"status": "held_out", "due_at": NOW + timedelta(hours=2), "updated_at": ago(days=2)},
        {"status": "held_out", "due_at": ago(days=40)},
        # Not outcomes: none of these is counted.
        {"status": "scheduled", "due_at": NOW + timedelta(days=1)},
        {"status": "cancelled", "updated_at": ago(hours=1)},
        {"status": "queued", "updated_at": ago(hours=1)},
    )


def test_today_and_the_last_30_days_split_at_the_viewers_midnight(
    ui_runtime: Runtime, admin: TestClient
) -> None:
    put_letters(ui_runtime)
    utc = admin.get("/ui/overview").text
    assert states(utc) == {
        "sent": (3, 5),
        "failed": (1, 2),
        "unknown": (1, 1),
        "suppressed": (0, 1),
        "held_out": (1, 1),
    }
    admin.cookies.set(TZ_COOKIE, NY)
    ny = admin.get("/ui/overview").text
    assert "(America/New_York)" in ny
    assert states(ny) == {
        "sent": (2, 4),
        "failed": (1, 2),
        "unknown": (1, 1),
        "suppressed": (0, 1),
        "held_out": (1, 1),
    }
    # Per day: New York's 19 November has the letter sent at 04:30 UTC on the 20th.
    assert day_row(ny, "2026-11-19") == (1, 0)
    assert day_row(ny, "2026-11-20") == (2, 1)
    assert day_row(ny, "2026-10-22") == (1, 0)
    assert day_row(utc, "2026-11-19") == (0, 0)
    assert day_row(utc, "2026-10-22") == (2, 0)
    assert day_row(utc, "2026-11-17") == (0, 1)  # failed three days ago


def test_the_chart_draws_the_same_days(ui_runtime: Runtime, admin: TestClient) -> None:
    import xml.etree.ElementTree as ET

    put_letters(ui_runtime)
    admin.cookies.set(TZ_COOKIE, NY)
    html = admin.get("/ui/overview").text
    svg = ET.fromstring(re.search(r"<svg .*?</svg>", html, re.S).group(0))  # type: ignore[union-attr]
    assert svg.get("role") == "img"
    assert "sent 4 in all" in (svg.get("aria-label") or "")
    assert "failed 2 in all" in (svg.get("aria-label") or "")
    titles = [t.text for t in svg.iter("{http://www.w3.org/2000/svg}title")]
    assert (
        "20 Nov: 2 sent" in titles and "19 Nov: 1 sent" in titles and "20 Nov: 1 failed" in titles
    )
    assert len([t for t in titles if t and t.endswith(" sent")]) == 30


def test_scheduler_lag_is_the_oldest_due_scheduled_letter(
    ui_runtime: Runtime, admin: TestClient
) -> None:
    event = seed_event(ui_runtime)
    assert 'id="lag"' in (html := admin.get("/ui/overview").text)
    assert "none due" in html
    add_letters(
        ui_runtime,
        event,
        {"status": "scheduled", "due_at": NOW + timedelta(hours=1)},  # not due yet
        {"status": "queued", "due_at": ago(hours=3)},  # claimed already
        {"status": "held_out", "due_at": ago(hours=5)},  # never goes
    )
    assert "none due" in admin.get("/ui/overview").text
    add_letters(
        ui_runtime,
        event,
        {"status": "scheduled", "due_at": ago(minutes=90)},
        {"status": "scheduled", "due_at": ago(minutes=10)},
    )
    html = admin.get("/ui/overview").text
    lag = html.split('id="lag"', 1)[1].split('id="outbox-total"', 1)[0]
    assert '<time datetime="PT5400S">' in lag
    assert "2 letters due" in lag
    assert f'datetime="{ago(minutes=90).isoformat()}"' in lag


def test_the_crm_outbox_by_the_crm_it_goes_to(
    tmp_path: Path, db_url: str, clock: FixedClock
) -> None:
    class Hubspot(LogCrm):
        name = "hubspot"

    runtime = build_runtime(
        make_settings(tmp_path, db_url, admin_token=SecretStr(ADMIN_TOKEN)),
        clock=clock,
        dispatcher=RecordingDispatcher(),
        crm=CrmRouter(LogCrm(), {"hubspot": Hubspot()}),
    )
    try:
        add_activities(
            runtime,
            ("hubspot", "pending", ago(hours=3)),
            ("hubspot", "pending", ago(hours=1)),
            ("hubspot", "delivering", ago(minutes=5)),
            ("hubspot", "failed", ago(days=9)),
            *[("hubspot", "delivered", ago(days=1))] * 5,
            # Pipedrive is not written to natively here: its activities go to the default.
            ("pipedrive", "pending", ago(days=2)),
            (None, "failed", ago(days=20)),
            (None, "delivered", ago(days=1)),
        )
        with client_for(runtime) as client:
            sign_in(client)
            html = client.get("/ui/overview").text
    finally:
        runtime.engine.dispose()
    rows = table_rows(html, "outbox")
    assert [r[:4] for r in rows] == [["hubspot", "2", "1", "1"], ["log", "1", "0", "1"]]
    assert f'datetime="{ago(hours=3).isoformat()}"' in rows[0][4]
    assert f'datetime="{ago(days=2).isoformat()}"' in rows[1][4]
    assert re.search(r'id="outbox-total">.*?class="value">4<', html, re.S)


def test_an_empty_outbox_says_so(admin: TestClient) -> None:
    html = admin.get("/ui/overview").text
    assert "Nothing waiting" in html


def test_rates_by_letter_and_locale_with_names_escaped(
    ui_runtime: Runtime, admin: TestClient
) -> None:
    event = seed_event(ui_runtime)
    mine = {"letter": NASTY, "locale": "de&ru"}
    ids = add_letters(
        ui_runtime,
        event,
        *[{"status": "sent", "sent_at": ago(days=1), **mine}] * 4,
        {"status": "sent", "sent_at": ago(days=1), "created_at": ago(days=45), **mine},
        {"status": "failed", "updated_at": ago(days=1), "letter": "deal_closed"},
    )
    with ui_runtime.session_factory.begin() as session:
        session.add_all(
            [
                Open(letter_id=ids[0], at=ago(hours=5), method="GET", kind="human"),
                Open(letter_id=ids[0], at=ago(hours=4), method="GET", kind="human"),
                Open(letter_id=ids[1], at=ago(hours=4), method="GET", kind="machine"),
                # The letter made 45 days ago is outside the rates (counted by creation).
                Open(letter_id=ids[4], at=ago(hours=4), method="GET", kind="human"),
                Click(letter_id=ids[1], at=ago(hours=3), url="https://shop.example"),
                Click(letter_id=ids[2], at=ago(hours=3), url="https://shop.example"),
            ]
        )
    response = admin.get("/ui/overview")
    assert NASTY not in response.text
    rows = table_rows(response.text, "rates")
    escaped = "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;"
    assert rows == [
        [escaped, "de&amp;ru", "4", "1", "25.0%", "2", "50.0%"],
        ["deal_closed", "de", "0", "0", "\u2013", "0", "\u2013"],
    ]


def test_rates_follow_the_readers_language(ui_runtime: Runtime, admin: TestClient) -> None:
    event = seed_event(ui_runtime)
    ids = add_letters(ui_runtime, event, *[{"status": "sent", "sent_at": ago(days=1)}] * 3)
    with ui_runtime.session_factory.begin() as session:
        session.add(Open(letter_id=ids[0], at=ago(hours=1), method="GET", kind="human"))
    html = admin.get("/ui/overview", headers={"accept-language": "de-DE"}).text
    assert table_rows(html, "rates")[0][4] == "33,3%"


# --- cost --------------------------------------------------------------------------------


def test_a_fixed_number_of_queries_however_many_letters(
    ui_runtime: Runtime, admin: TestClient
) -> None:
    event = seed_event(ui_runtime)

    def queries() -> int:
        with recorded_statements(ui_runtime) as seen:
            assert admin.get("/ui/overview").status_code == 200
        return len(seen)

    add_letters(ui_runtime, event, {"status": "sent", "sent_at": ago(hours=1)})
    few = queries()
    rows = []
    for n in range(600):
        status = ("sent", "failed", "unknown", "suppressed", "held_out", "scheduled")[n % 6]
        at = ago(hours=n)
        rows.append({"status": status, "sent_at": at, "updated_at": at, "due_at": at})
    add_letters(ui_runtime, event, *rows)
    add_activities(ui_runtime, *[("hubspot", "pending", ago(hours=n)) for n in range(50)])
    assert queries() == few
    assert states(admin.get("/ui/overview").text)["sent"][1] == 1 + 100
