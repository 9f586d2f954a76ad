"""What counts as a conversion, an open, a click and an unsubscribe in an arm."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import insert, select, update

from tests.conftest import NOW
from tests.experiments.population import Population
from worker.experiments.outcomes import ArmCounts, arm_counts
from worker.models import Click, CrmActivity, Letter, Open
from worker.planning.rules_model import HOLDOUT
from worker.runtime import Runtime

DAY = timedelta(days=1)
WINDOW = 90 * DAY


def counts(runtime: Runtime, **kw: object) -> dict[str, ArmCounts]:
    options: dict[str, object] = {"window": WINDOW, "convert_on": ["deal.closed"], "now": NOW}
    with runtime.session_factory() as session:
        return arm_counts(session, "deal-thanks-q1", **(options | kw))  # type: ignore[arg-type]


def test_a_later_deal_of_the_same_contact_within_the_window_converts(runtime: Runtime) -> None:
    p = Population()
    start = NOW - 200 * DAY
    cases: dict[str, tuple[str, list[tuple[str, str | None, float, str]]]] = {
        # contact: (arm, later events as (type, deal, days after the planned time, source))
        "converts@x.org": ("a", [("deal.closed", "d-new", 30, "generic")]),
        "from-the-crm@x.org": ("a", [("deal.closed", "d-crm", 89, "hubspot")]),
        "same-deal-again@x.org": ("a", [("deal.closed", "SAME", 10, "bitrix24")]),
        "too-late@x.org": ("a", [("deal.closed", "d-late", 91, "generic")]),
        "before-the-letter@x.org": ("a", [("deal.closed", "d-early", -0.5, "generic")]),
        "lost-not-won@x.org": ("a", [("deal.lost", "d-lost", 5, "generic")]),
        "referral@x.org": ("a", [("referral.made", None, 5, "generic")]),
        "held-out-converts@x.org": (HOLDOUT, [("deal.closed", "d-h", 40, "pipedrive")]),
        "held-out-twice@x.org": (
            HOLDOUT,
            [("deal.closed", "d-1", 2, "generic"), ("deal.closed", "d-2", 3, "generic")],
        ),
    }
    for email, (arm, later) in cases.items():
        status = "held_out" if arm == HOLDOUT else "sent"
        p.letter(arm, email, "SAME" if "same" in email else f"first-{email}", start, status)
        for kind, deal_id, days, source in later:
            p.event(kind, email, deal_id, start + days * DAY, source)
    # Another contact's deal converts nobody else.
    p.event("deal.closed", "someone-else@x.org", "d-x", start + 5 * DAY)
    p.write(runtime.session_factory)

    found = counts(runtime)
    assert (found["a"].planned, found["a"].converted) == (7, 2)
    assert (found[HOLDOUT].planned, found[HOLDOUT].converted) == (2, 2)
    assert (found[HOLDOUT].held_out, found[HOLDOUT].sent) == (2, 0)
    # referral.made converts when the experiment says so.
    with_referrals = counts(runtime, convert_on=["deal.closed", "referral.made"])
    assert with_referrals["a"].converted == 3
    # A window of 30 days keeps only what came within 30 days.
    assert counts(runtime, window=30 * DAY)["a"].converted == 1


def test_the_conversion_clock_runs_alike_in_every_arm_and_open_windows_are_counted(
    runtime: Runtime,
) -> None:
    p = Population()
    for n, (arm, days_ago) in enumerate([("a", 100), ("a", 10), (HOLDOUT, 100), (HOLDOUT, 10)]):
        email = f"c{n}@x.org"
        p.letter(
            arm, email, f"d{n}", NOW - days_ago * DAY, "held_out" if arm == HOLDOUT else "sent"
        )
        p.event("deal.closed", email, f"r{n}", NOW - (days_ago - 5) * DAY)
    p.write(runtime.session_factory)
    found = counts(runtime)
    for arm in ("a", HOLDOUT):
        assert found[arm].converted == 2
        assert found[arm].in_window == 1  # the letter of 10 days ago may still convert
    # --since: only letters planned from then on.
    recent = counts(runtime, since=NOW - 20 * DAY)
    assert {arm: c.planned for arm, c in recent.items()} == {"a": 1, HOLDOUT: 1}


def test_opens_clicks_and_unsubscribes_count_letters_not_hits(runtime: Runtime) -> None:
    p = Population()
    for n in range(4):
        p.letter("b", f"c{n}@x.org", f"d{n}", NOW - DAY)
    p.write(runtime.session_factory)
    with runtime.session_factory.begin() as session:
        ids = sorted(session.scalars(select(Letter.id)))
        human = {"method": "GET", "kind": "human", "at": NOW}
        session.execute(
            insert(Open),
            [
                {"letter_id": ids[0], **human},
                {"letter_id": ids[0], **human},  # a second open of the same letter
                {"letter_id": ids[1], "method": "GET", "kind": "machine", "at": NOW},
            ],
        )
        session.execute(insert(Click), [{"letter_id": ids[2], "url": "https://x", "at": NOW}])
        session.execute(update(Letter).where(Letter.id == ids[3]).values(extra_clicks=3))
        session.execute(
            insert(CrmActivity),
            [
                {
                    "letter_id": ids[1],
                    "kind": "contact.unsubscribed",
                    "idempotency_key": "u1",
                    "payload": {},
                    "status": "pending",
                    "attempts": 0,
                    "next_attempt_at": NOW,
                    "created_at": NOW,
                    "updated_at": NOW,
                }
            ],
        )
    found = counts(runtime)["b"]
    assert (found.planned, found.sent) == (4, 4)
    assert found.opened == 1  # human opens only, once per letter
    assert found.clicked == 2  # a stored click, and clicks past the per-letter cap
    assert found.unsubscribed == 1
