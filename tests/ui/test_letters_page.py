"""The letters pages: filters and totals, a letter's story, and the actions (one letter or
a whole filter), each audited, refused for read-only viewers and forged forms."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from itertools import pairwise
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import insert, select, update

from tests.conftest import NOW, SAMPLES
from tests.helpers import all_letters, ingest_doc
from tests.ui.conftest import ORIGIN, csrf_of, post_form
from worker.clock import FixedClock
from worker.models import Attempt, AuditEntry, Letter, LetterStatus
from worker.runtime import Runtime

FEEDBACK: dict[str, Any] = json.loads((SAMPLES / "feedback_logged.de.json").read_text())


def letter_to(runtime: Runtime, n: int, status: str = "scheduled", **values: Any) -> int:
    doc = json.loads(json.dumps(FEEDBACK))
    doc["data"]["contact"]["email"] = f"customer{n}@example.org"
    [letter] = ingest_doc(runtime, doc, f"evt_{n}")
    with runtime.session_factory.begin() as session:
        session.execute(
            update(Letter).where(Letter.id == letter.id).values(status=status, **values)
        )
    return letter.id


def audit(runtime: Runtime) -> list[AuditEntry]:
    with runtime.session_factory() as session:
        return list(session.scalars(select(AuditEntry).order_by(AuditEntry.id)))


def statuses(runtime: Runtime) -> dict[int, str]:
    return {x.id: x.status for x in all_letters(runtime)}


def ids_on(html: str) -> list[int]:
    return [int(n) for n in re.findall(r'<a href="/ui/letters/(\d+)">', html)]


def test_the_list_filters_counts_and_pages_newest_first(
    admin: TestClient, ui_runtime: Runtime
) -> None:
    failed = [
        letter_to(ui_runtime, n, "failed", last_error="smtp: 550 no such user") for n in range(55)
    ]
    sent = letter_to(ui_runtime, 100, "sent")
    first = admin.get("/ui/letters", params={"status": "failed"}).text
    assert "55 letters, page 1 of 2" in first
    assert ids_on(first) == sorted(failed, reverse=True)[:50]
    second = admin.get("/ui/letters", params={"status": "failed", "page": 2}).text
    assert ids_on(second) == sorted(failed, reverse=True)[50:]
    everyone = admin.get("/ui/letters").text
    assert "56 letters" in everyone and sent in ids_on(everyone)
    one = admin.get("/ui/letters", params={"contact": "Customer7@example.org"}).text
    assert ids_on(one) == [failed[7]]
    assert "1 letter" in one
    assert ids_on(admin.get("/ui/letters", params={"locale": "ru"}).text) == []
    assert admin.get("/ui/letters", params={"status": "faild"}).status_code == 422


def test_a_letters_page_tells_its_story_and_shows_it_in_a_sandbox(
    admin: TestClient, ui_runtime: Runtime
) -> None:
    letter_id = letter_to(
        ui_runtime, 1, "failed", last_error="<script>alert(1)</script>", attempt_count=1
    )
    with ui_runtime.session_factory.begin() as session:
        session.execute(
            insert(Attempt),
            [
                {
                    "letter_id": letter_id,
                    "started_at": NOW,
                    "finished_at": NOW,
                    "outcome": "permanent",
                    "error_class": "rcpt",
                    "smtp_code": 550,
                    "error_text": "5.1.1 <customer1@example.org>: mailbox unavailable",
                }
            ],
        )
    page = admin.get(f"/ui/letters/{letter_id}").text
    assert "attempt permanent" in page
    assert "(rcpt 550: 5.1.1 &lt;customer1@example.org&gt;: mailbox unavailable)" in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>" not in page
    assert f'src="/ui/letters/{letter_id}/rendered" sandbox=""' in page
    frame = admin.get(f"/ui/letters/{letter_id}/rendered")
    assert frame.status_code == 200 and "<html" in frame.text.lower()
    policy = frame.headers["content-security-policy"]
    assert (
        policy.startswith("sandbox;") and "script-src" not in policy and "img-src data:" in policy
    )
    assert admin.get("/ui/letters/999999").status_code == 404


def test_replay_one_failed_letter_with_a_reason_is_audited(
    admin: TestClient, ui_runtime: Runtime
) -> None:
    letter_id = letter_to(ui_runtime, 1, "failed")
    page = f"/ui/letters/{letter_id}"
    assert "Replay sends this letter again" in admin.get(page).text
    done = post_form(admin, f"{page}/replay", page, reason="relay fixed")
    assert done.status_code == 303 and done.headers["location"] == f"{page}?done=replay&n=1"
    assert statuses(ui_runtime)[letter_id] == LetterStatus.SCHEDULED
    [entry] = audit(ui_runtime)
    assert (entry.action, entry.letter_id, entry.reason) == ("replay", letter_id, "relay fixed")
    assert entry.actor == "dashboard (testclient)"
    assert "Replayed: it goes out again shortly." in admin.get(done.headers["location"]).text


def test_an_unknown_letter_needs_the_explicit_checkbox(
    admin: TestClient, ui_runtime: Runtime
) -> None:
    letter_id = letter_to(ui_runtime, 1, "unknown")
    page = f"/ui/letters/{letter_id}"
    html = admin.get(page).text
    assert 'name="force" value="true" required' in html
    refused = post_form(admin, f"{page}/replay", page, reason="sure?")
    assert refused.status_code == 409 and "outcome unknown" in refused.text
    assert statuses(ui_runtime)[letter_id] == LetterStatus.UNKNOWN and audit(ui_runtime) == []
    done = post_form(admin, f"{page}/replay", page, reason="the relay lost it", force="true")
    assert done.status_code == 303
    assert statuses(ui_runtime)[letter_id] == LetterStatus.SCHEDULED
    assert audit(ui_runtime)[0].details["force"] is True


def test_cancel_and_send_now_from_a_letters_page(
    admin: TestClient, ui_runtime: Runtime, clock: FixedClock
) -> None:
    first, second = letter_to(ui_runtime, 1), letter_to(ui_runtime, 2)
    post_form(admin, f"/ui/letters/{first}/cancel", f"/ui/letters/{first}", reason="asked by phone")
    before = {x.id: x.due_at for x in all_letters(ui_runtime)}[second]
    post_form(admin, f"/ui/letters/{second}/send-now", f"/ui/letters/{second}", reason="vip")
    after = {x.id: x for x in all_letters(ui_runtime)}
    assert after[first].status == LetterStatus.CANCELLED
    assert after[second].due_at < before and after[second].due_at >= clock.now()
    assert [(e.action, e.reason) for e in audit(ui_runtime)] == [
        ("cancel", "asked by phone"),
        ("send-now", "vip"),
    ]
    # A cancelled letter offers nothing more.
    assert '<form method="post" action="/ui/letters/' not in admin.get(f"/ui/letters/{first}").text


def test_read_only_viewers_see_no_actions_and_cannot_post_them(
    reader: TestClient, admin: TestClient, ui_runtime: Runtime
) -> None:
    letter_id = letter_to(ui_runtime, 1, "failed")
    page = reader.get(f"/ui/letters/{letter_id}").text
    assert "/replay" not in page and "read-only" in page
    token = csrf_of(page)  # the sign-out form's: valid for this session, not for acting
    response = reader.post(
        f"/ui/letters/{letter_id}/replay",
        data={"csrf": token, "reason": "x"},
        headers={"origin": ORIGIN},
    )
    assert response.status_code == 403 and "read-only" in response.text
    assert statuses(ui_runtime)[letter_id] == LetterStatus.FAILED and audit(ui_runtime) == []


def test_a_forged_action_changes_nothing(admin: TestClient, ui_runtime: Runtime) -> None:
    letter_id = letter_to(ui_runtime, 1, "failed")
    token = csrf_of(admin.get(f"/ui/letters/{letter_id}").text)
    for data, origin in (
        ({"reason": "x"}, ORIGIN),
        ({"csrf": "forged", "reason": "x"}, ORIGIN),
        ({"csrf": token, "reason": "x"}, "https://evil.example"),
    ):
        response = admin.post(
            f"/ui/letters/{letter_id}/replay", data=data, headers={"origin": origin}
        )
        assert response.status_code in (403, 422)
    no_reason = admin.post(
        f"/ui/letters/{letter_id}/replay",
        data={"csrf": token, "reason": ""},
        headers={"origin": ORIGIN},
    )
    assert no_reason.status_code == 422
    assert statuses(ui_runtime)[letter_id] == LetterStatus.FAILED and audit(ui_runtime) == []


def test_a_holdout_letter_offers_no_action(admin: TestClient, ui_runtime: Runtime) -> None:
    letter_id = letter_to(ui_runtime, 1, "held_out", experiment="t", arm="holdout")
    page = admin.get(f"/ui/letters/{letter_id}").text
    assert "Nothing to do: held out by experiment t" in page
    refused = post_form(
        admin, f"/ui/letters/{letter_id}/send-now", f"/ui/letters/{letter_id}", reason="x"
    )
    assert refused.status_code == 409 and "held out by experiment t" in refused.text


def test_bulk_replay_counts_first_then_paces_and_audits_each(
    admin: TestClient, ui_runtime: Runtime, clock: FixedClock
) -> None:
    failed = [letter_to(ui_runtime, n, "failed") for n in range(3)]
    letter_to(ui_runtime, 10, "sent")
    listing = admin.get("/ui/letters", params={"status": "failed"}).text
    assert 'href="/ui/bulk/replay?status=failed"' in listing
    confirm = admin.get("/ui/bulk/replay", params={"status": "failed"}).text
    assert "Replay: 3 letters" in confirm and 'name="expected" value="3"' in confirm
    assert set(statuses(ui_runtime).values()) == {"failed", "sent"}  # counting changed nothing
    # Another letter fails while the admin reads: the count no longer holds, nothing is done.
    failed.append(letter_to(ui_runtime, 20, "failed"))
    stale = admin.post(
        "/ui/bulk/replay",
        data={
            "csrf": csrf_of(confirm),
            "reason": "outage over",
            "expected": "3",
            "status": "failed",
        },
        headers={"origin": ORIGIN},
        follow_redirects=False,
    )
    assert stale.headers["location"] == "/ui/bulk/replay?status=failed"
    assert [statuses(ui_runtime)[i] for i in failed] == ["failed"] * 4
    done = admin.post(
        "/ui/bulk/replay",
        data={
            "csrf": csrf_of(confirm),
            "reason": "outage over",
            "expected": "4",
            "status": "failed",
        },
        headers={"origin": ORIGIN},
        follow_redirects=False,
    )
    assert done.headers["location"] == "/ui/letters?status=failed&done=replay&n=4"
    letters = {x.id: x for x in all_letters(ui_runtime)}
    assert [letters[i].status for i in failed] == ["scheduled"] * 4
    # Paced as the CLI paces (THANKLY_REPLAY_RATE_PER_SECOND, 2/s by default).
    due = sorted(letters[i].due_at for i in failed)
    assert [b - a for a, b in pairwise(due)] == [timedelta(seconds=0.5)] * 3
    assert [(e.action, e.reason) for e in audit(ui_runtime)] == [("replay", "outage over")] * 4


def test_bulk_replay_of_unknown_letters_needs_the_explicit_checkbox(
    admin: TestClient, ui_runtime: Runtime
) -> None:
    unknown = [letter_to(ui_runtime, n, "unknown") for n in range(2)]
    plain = admin.get("/ui/bulk/replay", params={"status": "unknown"}).text
    assert "Replay: 0 letters" in plain and "2: outcome unknown" in plain
    assert 'name="force" value="true" required' in plain  # the way to include them
    forced = admin.get("/ui/bulk/replay", params={"status": "unknown", "force": "true"}).text
    assert "Replay: 2 letters" in forced
    assert 'name="forced" value="true" required' in forced  # ticked once more to run
    done = admin.post(
        "/ui/bulk/replay",
        data={
            "csrf": csrf_of(forced),
            "reason": "relay lost them",
            "expected": "2",
            "status": "unknown",
            "force": "true",
        },
        headers={"origin": ORIGIN},
        follow_redirects=False,
    )
    assert done.status_code == 303
    assert [statuses(ui_runtime)[i] for i in unknown] == ["scheduled"] * 2
    assert all(e.details["force"] is True for e in audit(ui_runtime))
