"""`thankly stats` and `GET /admin/stats`: numbers computed by the database, any size."""

from __future__ import annotations

import random
from collections import Counter
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, insert, update

from tests.admin.test_admin import FEEDBACK, letters_in
from tests.conftest import NOW
from tests.helpers import ingest_doc, recorded_statements
from worker.admin.stats import stats, stats_rows
from worker.clock import FixedClock
from worker.models import Click, CrmActivity, Letter, Open
from worker.runtime import Runtime


def test_stats(runtime: Runtime, clock: FixedClock) -> None:
    ids = letters_in(runtime, ["sent", "sent", "failed", "scheduled", "suppressed"])
    with runtime.session_factory.begin() as session:
        session.add_all(
            [
                Open(letter_id=ids[0], at=clock.now(), method="GET", kind="human"),
                Open(letter_id=ids[0], at=clock.now(), method="GET", kind="human"),
                Open(letter_id=ids[1], at=clock.now(), method="GET", kind="machine"),
                Click(letter_id=ids[0], at=clock.now(), url="https://shop.example"),
            ]
        )
    [row] = stats(runtime.session_factory)
    assert (row["letter"], row["locale"]) == ("feedback_logged", "de")
    assert {k: row[k] for k in ("scheduled", "sent", "failed", "unknown", "suppressed")} == {
        "scheduled": 1,
        "sent": 2,
        "failed": 1,
        "unknown": 0,
        "suppressed": 1,
    }
    assert (row["human_opens"], row["machine_opens"], row["clicks"]) == (2, 1, 1)
    assert (row["open_rate"], row["click_rate"]) == (0.5, 0.5)  # 1 of 2 sent opened by a human


def test_since_counts_letters_by_creation_and_hits_by_when_they_happened(
    runtime: Runtime, clock: FixedClock
) -> None:
    [old] = letters_in(runtime, ["sent"])
    clock.set(NOW + timedelta(days=10))
    [new] = letters_in(runtime, ["sent"])
    cut = NOW + timedelta(days=5)
    with runtime.session_factory.begin() as session:
        session.execute(update_created(old, NOW))
        session.execute(update_created(new, NOW + timedelta(days=10)))
        session.add_all(
            [
                # The old letter is read both before and after the cut; only the later open
                # is in the period. The new letter is clicked after the cut.
                Open(letter_id=old, at=NOW + timedelta(days=1), method="GET", kind="human"),
                Open(letter_id=old, at=NOW + timedelta(days=11), method="GET", kind="human"),
                Click(letter_id=new, at=NOW + timedelta(days=11), url="https://shop.example"),
                Click(letter_id=old, at=NOW + timedelta(days=2), url="https://shop.example"),
            ]
        )
    [everything] = stats(runtime.session_factory)
    assert (everything["sent"], everything["human_opens"], everything["clicks"]) == (2, 2, 2)
    [recent] = stats(runtime.session_factory, since=cut)
    assert recent["sent"] == 1  # only the letter created since the cut
    assert (recent["human_opens"], recent["clicks"]) == (1, 1)  # hits since the cut
    # Rates describe the letters shown: the new one was clicked, not opened by a human.
    assert (recent["open_rate"], recent["click_rate"]) == (0.0, 1.0)


def update_created(letter_id: int, when: Any) -> Any:
    return update(Letter).where(Letter.id == letter_id).values(created_at=when)


def test_a_group_with_only_hits_in_the_period_still_shows_them(
    runtime: Runtime, clock: FixedClock
) -> None:
    [letter] = letters_in(runtime, ["sent"])
    later = clock.now() + timedelta(days=30)
    with runtime.session_factory.begin() as session:
        session.add(Open(letter_id=letter, at=later, method="GET", kind="human"))
    [row] = stats(runtime.session_factory, since=later - timedelta(days=1))
    assert (row["sent"], row["human_opens"], row["open_rate"]) == (0, 1, None)


STATUSES = [
    "scheduled",
    "queued",
    "sending",
    "sent",
    "failed",
    "unknown",
    "suppressed",
    "cancelled",
]
SHOWN = {"queued": "scheduled", "sending": "scheduled", "cancelled": None}


def test_a_hundred_thousand_letters_in_a_bounded_number_of_queries(runtime: Runtime) -> None:
    """Every number is checked against a count made here from the generated data."""
    [seed] = ingest_doc(runtime, FEEDBACK, "evt_seed")
    with runtime.session_factory.begin() as session:
        session.execute(delete(Letter))
    rng = random.Random(11)
    cut = NOW + timedelta(days=50)
    letters, opens, clicks, unsubscribes = [], [], [], []
    expected: dict[tuple[str, str], Counter[str]] = {}
    for n in range(100_000):
        name, locale = rng.choice(["deal_closed", "feedback_logged"]), rng.choice(["de", "ru"])
        status = rng.choice(STATUSES)
        created = NOW + timedelta(days=rng.randrange(100))
        letters.append(
            {
                "id": n + 1,
                "event_id": seed.event_id,
                "rule": f"r{n}",  # one letter per rule and event
                "letter": name,
                "locale": locale,
                "contact_email": f"c{n}@example.org",
                "status": status,
                "due_at": created,
                "message_id": f"<{n}@t>",
                "created_at": created,
                "updated_at": created,
            }
        )
        row = expected.setdefault((name, locale), Counter())
        shown = SHOWN.get(status, status)
        if shown is not None and created >= cut:
            row[shown] += 1
        human = machine = clicked = False
        for kind in ("human", "machine"):
            if rng.random() < 0.2:
                at = created + timedelta(hours=rng.randrange(24 * 60))
                opens.append({"letter_id": n + 1, "at": at, "method": "GET", "kind": kind})
                row[f"{kind}_opens"] += at >= cut
                human |= kind == "human"
                machine |= kind == "machine"
        if rng.random() < 0.1:
            at = created + timedelta(hours=rng.randrange(24 * 60))
            clicks.append({"letter_id": n + 1, "at": at, "url": "https://shop.example"})
            row["clicks"] += at >= cut
            clicked = True
        if rng.random() < 0.01:
            at = created + timedelta(days=1)
            unsubscribes.append(
                {
                    "letter_id": n + 1,
                    "kind": "contact.unsubscribed",
                    "idempotency_key": f"u{n}",
                    "payload": {},
                    "status": "pending",
                    "attempts": 0,
                    "next_attempt_at": at,
                    "created_at": at,
                    "updated_at": at,
                }
            )
            row["unsubscribes"] += at >= cut
        if status == "sent" and created >= cut:
            row["opened"] += human
            row["clicked"] += clicked
    with runtime.session_factory.begin() as session:
        for table, rows in ((Letter, letters), (Open, opens), (Click, clicks)):
            for start in range(0, len(rows), 10_000):
                session.execute(insert(table), rows[start : start + 10_000])
        session.execute(insert(CrmActivity), unsubscribes)

    with recorded_statements(runtime) as statements:
        got = stats_rows(runtime.session_factory, since=cut)
    assert len(statements) <= 6  # grouped queries, however many letters there are

    assert [(r.letter, r.locale) for r in got] == sorted(expected)
    fields = ["scheduled", "sent", "failed", "unknown", "suppressed", "human_opens"]
    fields += ["machine_opens", "clicks", "unsubscribes", "opened", "clicked"]
    for r in got:
        want = expected[(r.letter, r.locale)]
        assert {f: getattr(r, f) for f in fields} == {f: want[f] for f in fields}
        assert r.open_rate == (round(want["opened"] / want["sent"], 4) if want["sent"] else None)
