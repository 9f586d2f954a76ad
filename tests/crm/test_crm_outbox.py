"""CRM write-back: every activity arrives exactly once, through outages and rate limits."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr
from sqlalchemy import select
from typer.testing import CliRunner

from tests.conftest import SAMPLES, make_settings
from tests.crm_server import CRM_SECRET, crm_server
from tests.helpers import ingest_doc, run_worker
from worker.clock import FixedClock
from worker.crm.adapters import retry_after_seconds
from worker.delivery.send import send_letter
from worker.delivery.senders import MemorySender
from worker.models import ActivityStatus, CrmActivity
from worker.queue import DELIVER_ACTIVITY, RecordingDispatcher
from worker.runtime import Runtime, build_runtime
from worker.scheduling import tick

FEEDBACK: dict[str, Any] = json.loads((SAMPLES / "feedback_logged.de.json").read_text())


@pytest.fixture
def crm_runtime(tmp_path: Path, db_url: str, clock: FixedClock) -> Iterator[tuple[Runtime, Any]]:
    with crm_server() as (crm, url):
        settings = make_settings(
            tmp_path,
            db_url,
            crm="http",
            crm_url=url,
            crm_secret=SecretStr(CRM_SECRET),
            crm_retry_wait_seconds=0,
        )
        runtime = build_runtime(
            settings, clock=clock, dispatcher=RecordingDispatcher(), sender=MemorySender()
        )
        yield runtime, crm
        runtime.engine.dispose()


def send_one(runtime: Runtime, clock: FixedClock) -> int:
    [letter] = ingest_doc(runtime, FEEDBACK, "evt_1")
    clock.set(letter.due_at)
    tick.tick(runtime)
    runtime.delivery().sleep  # noqa: B018 - build the delivery with its defaults
    assert send_letter(runtime.delivery(), letter.id) == "sent"
    return letter.id


def pump(runtime: Runtime, clock: FixedClock, step: timedelta, rounds: int) -> list[str]:
    """CRM deliveries as the scheduler and a worker would run them, moving time on."""
    done = run_worker(runtime, clock, rounds, step)
    return [outcome for task, _, outcome in done if task == DELIVER_ACTIVITY]


def activities(runtime: Runtime) -> list[CrmActivity]:
    with runtime.session_factory() as session:
        return list(session.scalars(select(CrmActivity).order_by(CrmActivity.id)))


def test_sent_letter_reaches_the_crm_once_signed(
    crm_runtime: tuple[Runtime, Any], clock: FixedClock
) -> None:
    runtime, crm = crm_runtime
    letter_id = send_one(runtime, clock)
    assert pump(runtime, clock, timedelta(seconds=10), 3) == ["delivered"]
    assert crm.rejected == []
    [(key, document)] = crm.accepted.items()
    assert key == f"sent:{letter_id}"
    assert document["type"] == "email.sent"
    assert document["data"]["letter_id"] == letter_id
    assert document["data"]["contact"] == {"id": "c-2002", "email": "k.mueller@example.de"}
    assert document["data"]["message_id"].endswith("@shop.example>")
    assert [a.status for a in activities(runtime)] == [ActivityStatus.DELIVERED]


def test_an_outage_of_hours_loses_nothing_and_sends_nothing_twice(
    crm_runtime: tuple[Runtime, Any], clock: FixedClock
) -> None:
    runtime, crm = crm_runtime
    crm.script = [(500, {})] * 30 + [(429, {"Retry-After": "120"})] * 2
    send_one(runtime, clock)
    outcomes = pump(runtime, clock, timedelta(minutes=10), 60)  # ten hours of ticks
    assert outcomes[-1] == "delivered" and outcomes.count("delivered") == 1
    assert crm.script == [] and len(crm.accepted) == 1
    [activity] = activities(runtime)
    assert activity.status == ActivityStatus.DELIVERED and activity.attempts == 33


def test_retry_after_is_honoured(crm_runtime: tuple[Runtime, Any], clock: FixedClock) -> None:
    runtime, crm = crm_runtime
    crm.script = [(429, {"Retry-After": "3600"})]
    send_one(runtime, clock)
    before = clock.now()
    assert pump(runtime, clock, timedelta(seconds=1), 1) == ["retry"]
    [activity] = activities(runtime)
    assert activity.next_attempt_at >= before + timedelta(seconds=3600)
    assert crm.posts[activity.idempotency_key] == 1  # a long wait is not spent blocking
    clock.set(before + timedelta(minutes=59))
    assert pump(runtime, clock, timedelta(seconds=1), 1) == []
    clock.set(before + timedelta(hours=1, seconds=1))
    assert pump(runtime, clock, timedelta(seconds=1), 1) == ["delivered"]


@pytest.mark.parametrize(
    ("status", "outcome"),
    [(400, "failed"), (404, "failed"), (408, "delivered"), (503, "delivered")],
)
def test_only_4xx_other_than_408_and_429_are_permanent(
    crm_runtime: tuple[Runtime, Any], clock: FixedClock, status: int, outcome: str
) -> None:
    runtime, crm = crm_runtime
    crm.script = [(status, {})]
    send_one(runtime, clock)
    assert pump(runtime, clock, timedelta(seconds=1), 1) == [outcome]


def test_a_lost_delivery_lease_is_delivered_again_without_a_second_entry(
    crm_runtime: tuple[Runtime, Any], clock: FixedClock
) -> None:
    runtime, crm = crm_runtime
    send_one(runtime, clock)
    tick.tick(runtime)  # claimed, but the worker "dies" before delivering
    clock.set(clock.now() + timedelta(minutes=6))
    flags = []
    deliver = runtime.crm.deliver

    def noted(key: str, payload: dict[str, Any], *, retry: bool = False) -> None:
        flags.append(retry)
        deliver(key, payload, retry=retry)

    runtime.crm.deliver = noted  # type: ignore[method-assign]
    assert pump(runtime, clock, timedelta(seconds=1), 1) == ["delivered"]
    assert len(crm.accepted) == 1
    # The dead worker may have reached the CRM: a CRM without idempotency keys must look.
    assert flags == [True]


def test_crm_pending_lists_what_the_crm_lacks(
    crm_runtime: tuple[Runtime, Any], clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    from worker.cli.main import app

    runtime, crm = crm_runtime
    crm.script = [(500, {})] * 3
    send_one(runtime, clock)
    pump(runtime, clock, timedelta(seconds=1), 1)
    monkeypatch.setenv("THANKLY_DATABASE_URL", runtime.engine.url.render_as_string(False))
    result = CliRunner().invoke(app, ["crm", "pending", "--json"])
    [row] = json.loads(result.stdout)
    assert (row["kind"], row["status"], row["attempts"]) == ("email.sent", "pending", 3)
    assert row["last_error"].startswith("HTTP 500")


def test_retry_after_formats() -> None:
    from datetime import UTC, datetime

    now = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    assert retry_after_seconds("120", now) == 120
    assert retry_after_seconds("Mon, 23 Nov 2026 09:02:00 GMT", now) == 120
    assert retry_after_seconds("soon", now) is None and retry_after_seconds(None, now) is None


def test_the_http_crm_needs_its_url_and_secret(tmp_path: Path) -> None:
    from worker.crm.adapters import CrmNotConfigured, make_crm

    with pytest.raises(CrmNotConfigured, match="THANKLY_CRM_URL and THANKLY_CRM_SECRET"):
        make_crm(make_settings(tmp_path, "sqlite://", crm="http"))
    with pytest.raises(CrmNotConfigured, match="THANKLY_CRM=hubspot needs THANKLY_HUBSPOT_TOKEN"):
        make_crm(make_settings(tmp_path, "sqlite://", crm="hubspot"))


# --- hostile or broken answers never wedge delivery (issue 10, point 6) ------------------


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("99999999999", 3600.0),  # clamped: an hour at most
        ("3600", 3600.0),
        (" 7 ", 7.0),
        ("-5", None),
        ("1e9", None),
        ("²", None),  # a digit to str.isdigit, not to float
        ("12.5", None),
        ("Fri, 31 Dec 9999 23:59:59 GMT", 3600.0),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),
        ("Mon, 23 Nov 2026 09:02:00 -0000", 120.0),  # no zone: read as UTC
        ("Mon, 99 Nov 2026 09:02:00 GMT", None),
        ("", None),
    ],
)
def test_retry_after_is_parsed_defensively_and_clamped(header: str, seconds: float | None) -> None:
    from datetime import UTC, datetime

    now = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    assert retry_after_seconds(header, now) == seconds


@given(
    st.one_of(
        st.text(max_size=60),
        st.from_regex(r"\A[A-Za-z]{3}, [0-9]{1,3} [A-Za-z]{3} [0-9]{1,6} [0-9:]{5,9} \S{0,6}\Z"),
        st.integers(min_value=-(10**30), max_value=10**30).map(str),
    )
)
@settings(max_examples=300, deadline=None)
def test_any_retry_after_is_none_or_within_the_hour(header: str) -> None:
    from datetime import UTC, datetime

    seconds = retry_after_seconds(header, datetime(2026, 11, 23, 9, 0, tzinfo=UTC))
    assert seconds is None or 0.0 <= seconds <= 3600.0


@pytest.mark.parametrize("header", ["99999999999", "Fri, 31 Dec 9999 23:59:59 GMT"])
def test_a_huge_retry_after_is_a_retry_within_the_hour(
    crm_runtime: tuple[Runtime, Any], clock: FixedClock, header: str
) -> None:
    runtime, crm = crm_runtime
    crm.script = [(429, {"Retry-After": header})]
    send_one(runtime, clock)
    before = clock.now()
    assert pump(runtime, clock, timedelta(seconds=1), 1) == ["retry"]
    [activity] = activities(runtime)
    assert activity.status == ActivityStatus.PENDING and activity.attempts == 1
    assert (activity.last_error or "").startswith("HTTP 429")
    assert activity.next_attempt_at == before + timedelta(hours=1)
    clock.set(before + timedelta(hours=1))
    assert pump(runtime, clock, timedelta(seconds=1), 1) == ["delivered"]


@pytest.mark.parametrize("header", ["-1", "²", "soon", "1e99"])
def test_a_malformed_retry_after_is_ignored(
    crm_runtime: tuple[Runtime, Any], clock: FixedClock, header: str
) -> None:
    runtime, crm = crm_runtime
    crm.script = [(429, {"Retry-After": header})]
    send_one(runtime, clock)
    assert pump(runtime, clock, timedelta(seconds=1), 1) == ["delivered"]  # retried in-task
    [activity] = activities(runtime)
    assert activity.attempts == 2 and len(crm.accepted) == 1


class BrokenCrm:
    """An adapter failing the way no CrmError describes (a bug, a library's surprise)."""

    name = "broken"

    def __init__(self) -> None:
        self.calls = 0

    def deliver(self, key: str, payload: dict[str, Any], *, retry: bool = False) -> None:
        self.calls += 1
        raise UnicodeEncodeError("ascii", "ü", 0, 1, "ordinal not in range(128)")


def test_an_unexpected_failure_is_recorded_and_backed_off(
    crm_runtime: tuple[Runtime, Any], clock: FixedClock
) -> None:
    runtime, _ = crm_runtime
    runtime.crm = BrokenCrm()
    send_one(runtime, clock)
    waits = []
    for _ in range(4):
        before = clock.now()
        assert pump(runtime, clock, timedelta(seconds=1), 1) == ["retry"]
        [activity] = activities(runtime)
        assert activity.status == ActivityStatus.PENDING  # not left `delivering`
        assert (activity.last_error or "").startswith("UnicodeEncodeError:")
        waits.append(activity.next_attempt_at - before)
        clock.set(activity.next_attempt_at)
    assert activity.attempts == 4 and runtime.crm.calls == 4
    assert waits == sorted(waits) and waits[-1] > waits[0]  # backs off


def test_a_non_ascii_address_reaches_the_crm_in_the_body(
    crm_runtime: tuple[Runtime, Any], clock: FixedClock
) -> None:
    from worker.suppressions import unsubscribe_from_letter

    runtime, crm = crm_runtime
    doc = json.loads(json.dumps(FEEDBACK))
    doc["data"]["contact"]["email"] = "müller@exämple.org"
    [letter] = ingest_doc(runtime, doc, "evt_idn")
    assert unsubscribe_from_letter(runtime.session_factory, letter.id, clock.now()) is not None
    assert pump(runtime, clock, timedelta(seconds=1), 1) == ["delivered"]
    assert crm.rejected == []
    [(key, document)] = crm.accepted.items()
    assert key.isascii() and "müller" not in key
    assert document["type"] == "contact.unsubscribed"
    assert document["data"]["contact"]["email"] == "müller@exämple.org"
    # The same activity delivered again carries the same key: the CRM keeps one entry.
    from worker.crm.adapters import header_key

    assert header_key("unsubscribed:müller@exämple.org") == key


def test_the_delivery_lease_is_a_setting(
    tmp_path: Path, crm_runtime: tuple[Runtime, Any], clock: FixedClock
) -> None:
    runtime, crm = crm_runtime
    runtime.settings = runtime.settings.model_copy(update={"crm_lease_seconds": 900})
    send_one(runtime, clock)
    tick.tick(runtime)  # claimed, but the worker "dies" before delivering
    claimed = clock.now()
    clock.set(claimed + timedelta(minutes=14))
    assert pump(runtime, clock, timedelta(seconds=1), 1) == []  # still leased
    clock.set(claimed + timedelta(minutes=15, seconds=1))
    assert pump(runtime, clock, timedelta(seconds=1), 1) == ["delivered"]
    assert len(crm.accepted) == 1


def test_the_lease_must_outlast_the_sweep_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    from worker.settings import SettingsError, load_settings

    monkeypatch.setenv("THANKLY_SWEEP_GRACE_SECONDS", "120")
    monkeypatch.setenv("THANKLY_CRM_LEASE_SECONDS", "90")
    with pytest.raises(SettingsError, match=r"^THANKLY_CRM_LEASE_SECONDS: .*120"):
        load_settings()
    monkeypatch.setenv("THANKLY_CRM_LEASE_SECONDS", "600")
    assert load_settings().crm_lease_seconds == 600
    monkeypatch.delenv("THANKLY_CRM_LEASE_SECONDS")
    assert load_settings().crm_lease_seconds == 300


def test_an_activity_stuck_behind_a_backlog_is_enqueued_again_at_doubling_intervals(
    crm_runtime: tuple[Runtime, Any], clock: FixedClock
) -> None:
    """No worker takes the task (a backlog ahead of it in the queue): the scheduler queues
    another copy after the lease, then after ever longer waits, not once per lease. Over
    an hour with a 5-minute lease that is a handful of copies, where it was twelve."""
    runtime, crm = crm_runtime
    dispatcher = runtime.dispatcher
    assert isinstance(dispatcher, RecordingDispatcher)
    send_one(runtime, clock)
    start = clock.now()
    enqueued_at: list[timedelta] = []
    copies: list[int] = []
    while clock.now() < start + timedelta(hours=1):
        tick.tick(runtime)
        for task, ids in dispatcher.sent:
            if task == DELIVER_ACTIVITY:
                enqueued_at.append(clock.now() - start)
                copies += ids
        dispatcher.sent.clear()
        clock.set(clock.now() + timedelta(seconds=10))
    assert 3 <= len(enqueued_at) <= 6, enqueued_at
    gaps = [b - a for a, b in itertools.pairwise(enqueued_at)]
    assert all(later >= earlier for earlier, later in itertools.pairwise(gaps)), gaps
    # When the backlog clears, the copies lead to one delivery, and the CRM has one entry.
    from worker.jobs import run_job

    outcomes = [run_job(runtime, DELIVER_ACTIVITY, copy) for copy in copies]
    assert outcomes.count("delivered") == 1, outcomes
    assert len(crm.accepted) == 1
