"""Every 202 becomes an event: whatever ingest cannot store, plan or render is refused at
intake (400/422), on SQLite and on PostgreSQL alike, and nothing of it is stored."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from tests.conftest import NOW, SECRET, TEMPLATES, make_settings
from tests.helpers import count_rows, event_doc, ingest_doc, signed
from worker.clock import FixedClock
from worker.intake.ingest import ingest
from worker.letters.catalogue import Catalogue
from worker.models import Event, InboxItem
from worker.planning.rules import RulesError, load_rules
from worker.queue import RecordingDispatcher
from worker.runtime import Runtime, build_runtime

WEBHOOK = "/webhooks/generic"


def post(client: TestClient, body: bytes, msg_id: str) -> Any:
    raw, headers = signed(body, SECRET, NOW, msg_id)
    return client.post(WEBHOOK, content=raw, headers=headers)


def nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = [value]
    return value


def with_contact_extra(value: Any) -> bytes:
    doc = event_doc()
    doc["data"]["contact"]["crm_blob"] = value
    return json.dumps(doc).encode()


def assert_refused(client: TestClient, runtime: Runtime, body: bytes, field: str) -> None:
    response = post(client, body, "evt_refused")
    assert response.status_code in (400, 422), response.text
    assert field in response.text
    assert count_rows(runtime.session_factory) == (0, 0)


# 255 is where the payload can no longer be serialised; deeper still parses at intake
# (written out as text: json.dumps itself gives up first in a test's call stack).
@pytest.mark.parametrize("depth", [33, 255, 600, 959])
def test_json_nested_deeper_than_an_event_needs_is_refused(
    client: TestClient, runtime: Runtime, depth: int
) -> None:
    body = with_contact_extra("__DEEP__").replace(
        b'"__DEEP__"', b"[" * depth + b'"leaf"' + b"]" * depth
    )
    assert_refused(client, runtime, body, "nested")


def test_nesting_an_event_can_use_is_accepted_and_ingested(
    client: TestClient, runtime: Runtime
) -> None:
    response = post(client, with_contact_extra(nested(25)), "evt_nested_ok")
    assert response.status_code == 202
    assert ingest_all(runtime) == ["ingested"]


@pytest.mark.parametrize(
    "body",
    [
        # Lone surrogates: Python parses them, PostgreSQL's text and JSONB refuse them.
        b'{"type": "deal.closed", "timestamp": "2026-11-20T10:00:00Z", "data": {"contact":'
        b' {"email": "anna@example.org", "crm_notes": ["ok", "\\ud800"]}}}',
        b'{"type": "deal.closed", "timestamp": "2026-11-20T10:00:00Z", "data": {"contact":'
        b' {"email": "anna@example.org", "\\udfff": 1}}}',
        # 1e400 parses to infinity, which JSON (and JSONB) cannot hold.
        b'{"type": "deal.closed", "timestamp": "2026-11-20T10:00:00Z", "data": {"contact":'
        b' {"email": "anna@example.org", "score": -1e400}}}',
    ],
    ids=["surrogate-value", "surrogate-key", "infinite-number"],
)
def test_values_no_database_can_store_are_refused(
    client: TestClient, runtime: Runtime, body: bytes
) -> None:
    assert_refused(client, runtime, body, "data.contact")


@pytest.mark.parametrize(
    "timestamp",
    [
        "0001-01-01T00:00:00+05:00",  # before year 1 in UTC
        "0001-01-01T00:00:00-05:00",
        "9999-12-31T23:00:00-05:00",  # after year 9999 in UTC
        "9999-12-31T20:00:00+05:00",  # in range, but no delay can be added to it
        "1969-12-31T23:59:59Z",
        "2100-01-01T00:00:00Z",
    ],
)
def test_timestamps_planning_cannot_handle_are_refused(
    client: TestClient, runtime: Runtime, timestamp: str
) -> None:
    doc = event_doc()
    doc["timestamp"] = timestamp
    assert_refused(client, runtime, json.dumps(doc).encode(), "timestamp")


def ingest_all(runtime: Runtime) -> list[str]:
    with runtime.session_factory() as session:
        ids = list(session.scalars(select(InboxItem.id).order_by(InboxItem.id)))
    return [ingest(runtime.session_factory, i, runtime.clock, runtime.planner).outcome for i in ids]


# --- the property: every body the endpoint accepts ingests -----------------------------

json_leaves = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    # Any code point, surrogates included (json.dumps writes them as \\udXXX escapes).
    | st.text(st.characters(blacklist_categories=()), max_size=8)
)
json_values = st.recursive(
    json_leaves,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.text(st.characters(blacklist_categories=()), max_size=4), inner, max_size=3
        )
    ),
    max_leaves=8,
)
deep_values = st.builds(nested, st.integers(min_value=0, max_value=400))
offsets = st.integers(min_value=-14 * 60, max_value=14 * 60).map(
    lambda m: timezone(timedelta(minutes=m))
)
timestamps = st.builds(
    lambda naive, zone: naive.replace(tzinfo=zone).isoformat(),
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59)),
    offsets,
) | st.datetimes(
    min_value=datetime(2026, 1, 1), max_value=datetime(2027, 1, 1), timezones=st.just(UTC)
).map(datetime.isoformat)
names = st.text(st.characters(blacklist_categories=()), max_size=40)
event_types = st.sampled_from(
    ["deal.closed", "feedback.logged", "referral.made", "deal.lost", "contact.unsubscribed"]
)


@st.composite
def event_bodies(draw: st.DrawFn) -> bytes:
    doc: dict[str, Any] = {
        "type": draw(event_types),
        "timestamp": draw(timestamps),
        "data": {
            "contact": {
                "email": draw(st.sampled_from(["anna@example.org", "Bob@Example.COM"])),
                "first_name": draw(names),
                "timezone": draw(st.sampled_from(["Pacific/Kiritimati", "Etc/GMT+12", "UTC"])),
                "crm_blob": draw(json_values | deep_values),
            },
            "deal": {"id": draw(st.text(min_size=1, max_size=5)), "amount": 150},
            "feedback": {"text": draw(names)},
        },
        draw(names): draw(json_values),
    }
    return json.dumps(doc, ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass")


counter = itertools.count()


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=event_bodies())
def test_every_body_the_endpoint_accepts_ingests_into_an_event(
    client: TestClient, runtime: Runtime, body: bytes
) -> None:
    msg_id = f"evt_prop_{next(counter)}"
    response = post(client, body, msg_id)
    assert response.status_code in (202, 400, 422), response.text
    if response.status_code != 202:
        return
    with runtime.session_factory() as session:
        inbox_id = session.scalars(select(InboxItem.id).where(InboxItem.event_id == msg_id)).one()
    result = ingest(runtime.session_factory, inbox_id, runtime.clock, runtime.planner)
    assert result.outcome == "ingested", body
    with runtime.session_factory() as session:
        assert session.get(Event, result.event_id) is not None


# --- the rules side: no valid rules file turns an accepted timestamp into an overflow --


def test_the_latest_accepted_timestamp_plans_with_the_longest_delay_rules_allow(
    tmp_path: Path, db_url: str
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "defaults: {frequency_cap: {max: 1, per: 365d}, max_event_age: 365d}\n"
        "rules:\n"
        "  - {name: late, on: feedback.logged, letter: feedback_logged, delay: 365d}\n"
    )
    runtime = build_runtime(
        make_settings(tmp_path, db_url, rules_file=rules),
        clock=FixedClock(datetime(2099, 12, 31, 23, 59, tzinfo=UTC)),
        dispatcher=RecordingDispatcher(),
    )
    doc = event_doc("feedback.logged")
    doc["timestamp"] = "2099-12-31T23:59:59Z"
    [letter] = ingest_doc(runtime, doc, "evt_latest")
    assert letter.due_at.year == 2100
    runtime.engine.dispose()


@pytest.mark.parametrize(
    ("line", "where"),
    [
        ("defaults: {frequency_cap: {max: 1, per: 999999w}}", "defaults.frequency_cap.per"),
        ("defaults: {max_event_age: 999999w}", "defaults.max_event_age"),
        ("defaults: {}", "rules[0] (late).delay"),
    ],
)
def test_rules_refuse_durations_longer_than_a_year(tmp_path: Path, line: str, where: str) -> None:
    rules = tmp_path / "rules.yaml"
    delay = "999999w" if "rules" in where else "24h"
    rules.write_text(
        f"{line}\nrules:\n"
        f"  - {{name: late, on: feedback.logged, letter: feedback_logged, delay: {delay}}}\n"
    )
    with pytest.raises(RulesError) as caught:
        load_rules(rules, Catalogue.scan(TEMPLATES))
    [problem] = caught.value.lines()
    assert f"{where}: at most 365d" in problem
