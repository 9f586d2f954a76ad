"""The sources seam: a second source (tests/intake/form_source.py) fits without touching
intake — its own auth and content type, several events per request stored whole or not at
all, and enrichment at ingest whose transient failures are retried, never parked."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tests.conftest import NOW
from tests.helpers import all_letters
from tests.intake.form_source import NAME, TOKEN, FakeCrmApi, FormSource
from worker.clock import FixedClock
from worker.intake import sources
from worker.jobs import run_enqueued, run_job
from worker.models import InboxItem, InboxStatus
from worker.queue import INGEST_INBOX, RecordingDispatcher
from worker.retry import CallError
from worker.runtime import Runtime
from worker.scheduling import tick

URL = f"/webhooks/{NAME}"
FORM = {"content-type": "application/x-www-form-urlencoded"}
STAMP = "2026-11-20T10:00:00Z"


def _deal(email: str) -> dict[str, Any]:
    return {
        "contact": {"email": email, "first_name": "Anna", "timezone": "Europe/Berlin"},
        "deal": {"title": "Annual plan", "amount": "1000", "currency": "EUR"},
    }


@pytest.fixture
def api() -> Iterator[FakeCrmApi]:
    crm = FakeCrmApi(deals={"1": _deal("anna@example.org"), "2": _deal("olga@example.org")})
    sources.register(NAME, lambda settings: FormSource(crm))
    yield crm
    sources.unregister(NAME)


def _post(client: TestClient, *ids: str, token: str = TOKEN) -> httpx.Response:
    fields = [("token", token), ("ts", STAMP), *(("deal_id", i) for i in ids)]
    response: httpx.Response = client.post(URL, content=urlencode(fields), headers=FORM)
    return response


def _inbox(runtime: Runtime) -> list[InboxItem]:
    with runtime.session_factory() as session:
        return list(session.scalars(select(InboxItem).order_by(InboxItem.id)))


def test_a_batch_becomes_one_inbox_row_per_event_and_each_is_planned(
    runtime: Runtime, client: TestClient, api: FakeCrmApi, dispatcher: RecordingDispatcher
) -> None:
    response = _post(client, "1", "2")
    assert response.status_code == 202
    assert response.json() == {
        "status": "accepted",
        "event_ids": [f"deal-1-{STAMP}", f"deal-2-{STAMP}"],
        "new": 2,
        "duplicates": 0,
    }
    rows = _inbox(runtime)
    assert [(r.source, r.event_id) for r in rows] == [
        (NAME, f"deal-1-{STAMP}"),
        (NAME, f"deal-2-{STAMP}"),
    ]
    assert dispatcher.sent == [(INGEST_INBOX, (rows[0].id,)), (INGEST_INBOX, (rows[1].id,))]

    done = run_enqueued(runtime, list(dispatcher.sent))
    assert [outcome for _, _, outcome in done] == ["ingested", "ingested"]
    assert api.calls == ["1", "2"]  # enriched through the CRM's API at ingest
    assert sorted(letter.contact_email for letter in all_letters(runtime)) == [
        "anna@example.org",
        "olga@example.org",
    ]


def test_a_redelivered_batch_stores_only_what_is_new(
    runtime: Runtime, client: TestClient, api: FakeCrmApi
) -> None:
    assert _post(client, "1").status_code == 202
    again = _post(client, "1", "2")
    assert again.status_code == 202
    assert again.json()["new"] == 1 and again.json()["duplicates"] == 1
    everything_again = _post(client, "1", "2")
    assert everything_again.status_code == 200
    assert everything_again.json()["status"] == "duplicate"
    assert len(_inbox(runtime)) == 2


def test_a_batch_with_one_bad_event_stores_nothing(
    runtime: Runtime, client: TestClient, api: FakeCrmApi, dispatcher: RecordingDispatcher
) -> None:
    response = _post(client, "1", "not-a-number", "2")
    assert response.status_code == 422
    assert _inbox(runtime) == [] and dispatcher.sent == []


@pytest.mark.parametrize(
    ("url", "headers", "token", "status"),
    [
        (URL, FORM, "wrong-token", 401),
        (URL, {"content-type": "application/json"}, TOKEN, 415),
        ("/webhooks/nosuchcrm", FORM, TOKEN, 404),
    ],
)
def test_the_source_decides_who_may_post_and_what(
    runtime: Runtime,
    client: TestClient,
    api: FakeCrmApi,
    url: str,
    headers: dict[str, str],
    token: str,
    status: int,
) -> None:
    body = urlencode([("token", token), ("ts", STAMP), ("deal_id", "1")])
    response = client.post(url, content=body, headers=headers)
    assert response.status_code == status
    assert response.json()["status"] == "rejected"
    assert _inbox(runtime) == []


def test_a_crm_that_is_busy_is_asked_again_later_and_the_row_is_never_parked(
    runtime: Runtime, client: TestClient, api: FakeCrmApi, clock: FixedClock
) -> None:
    api.failures = [
        CallError("429 too many requests", permanent=False, retry_after=600),
        CallError("503 unavailable", permanent=False),
    ]
    _post(client, "1")
    [row] = _inbox(runtime)

    assert run_job(runtime, INGEST_INBOX, row.id) == "retry"
    [row] = _inbox(runtime)
    assert row.status == InboxStatus.PENDING and row.error is not None and "429" in row.error
    grace = timedelta(seconds=runtime.settings.sweep_grace_seconds)
    # The CRM asked for ten minutes: the sweeper does not ask again before that.
    clock.set(NOW + grace * 2)
    assert tick.tick(runtime).inbox_requeued == 0
    clock.set(NOW + timedelta(minutes=10) + grace * 2)
    assert tick.tick(runtime).inbox_requeued == 1

    assert run_job(runtime, INGEST_INBOX, row.id) == "retry"  # 503
    assert run_job(runtime, INGEST_INBOX, row.id) == "ingested"
    [row] = _inbox(runtime)
    assert row.status == InboxStatus.PROCESSED
    assert [letter.contact_email for letter in all_letters(runtime)] == ["anna@example.org"]


def test_an_object_the_crm_no_longer_has_parks_the_row_with_the_reason(
    runtime: Runtime, client: TestClient, api: FakeCrmApi
) -> None:
    _post(client, "7")  # a deal the CRM does not know
    [row] = _inbox(runtime)
    assert run_job(runtime, INGEST_INBOX, row.id) == "invalid"
    [row] = _inbox(runtime)
    assert row.status == InboxStatus.FAILED
    assert row.error == f"{NAME}: 404 deal 7 not found"
    assert all_letters(runtime) == []


def test_source_names_are_checked_when_registered() -> None:
    with pytest.raises(ValueError, match="registered already"):
        sources.register("generic", lambda settings: FormSource(FakeCrmApi()))
    with pytest.raises(ValueError, match="lower-case"):
        sources.register("Has Spaces", lambda settings: FormSource(FakeCrmApi()))
