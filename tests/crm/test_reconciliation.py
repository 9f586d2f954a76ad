"""Reconciliation: a won deal whose webhook never came is found through the CRM's API and
planned; one whose webhook came is not, nor is one found twice; paging is followed; the
scheduler runs it once per interval; and `thankly crm reconcile` / `crm check` say what
they did."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import select

from tests.conftest import NOW
from tests.crm.hubspot_api import TOKEN as HS_TOKEN
from tests.crm.hubspot_api import HubSpotState, hubspot_api
from tests.crm.pipedrive_api import TOKEN as PD_TOKEN
from tests.crm.pipedrive_api import PipedriveState, pipedrive_api
from tests.crm.steps import crm_runtime
from tests.helpers import all_letters
from worker.clock import FixedClock
from worker.crm.reconcile import run
from worker.intake.inbox import accept_batch
from worker.intake.sources import RawEvent
from worker.jobs import run_enqueued
from worker.models import CrmSync, InboxItem, LetterStatus
from worker.queue import INGEST_INBOX, RECONCILE_CRM, RecordingDispatcher
from worker.runtime import Runtime
from worker.scheduling import tick


def iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


@pytest.fixture
def apis() -> Iterator[tuple[str, HubSpotState, str, PipedriveState]]:
    with hubspot_api() as (hs_url, hs), pipedrive_api() as (pd_url, pd):
        hs.contacts["201"] = {"email": "katrin@example.de", "firstname": "Katrin",
                              "hs_language": "de"}  # fmt: skip
        email = {"value": "zofia@nowak.example", "primary": True}
        pd.persons["5"] = {"id": 5, "name": "Zofia Nowak", "first_name": "Zofia", "emails": [email]}
        yield hs_url, hs, pd_url, pd


@pytest.fixture
def both(
    tmp_path: Path,
    db_url: str,
    clock: FixedClock,
    dispatcher: RecordingDispatcher,
    apis: tuple[str, HubSpotState, str, PipedriveState],
) -> Iterator[Runtime]:
    with crm_runtime(
        tmp_path,
        db_url,
        clock,
        dispatcher,
        hubspot_client_secret=SecretStr("hs-secret"),
        hubspot_token=SecretStr(HS_TOKEN),
        hubspot_api_base=apis[0],
        pipedrive_webhook_user="thankly",
        pipedrive_webhook_password=SecretStr("pw"),
        pipedrive_token=SecretStr(PD_TOKEN),
        pipedrive_api_base=apis[2],
        pipedrive_locale="pl",
        crm_reconcile_minutes=30,
    ) as runtime:
        yield runtime


def hs_deal(
    state: HubSpotState, deal_id: str, won_ago: timedelta, stage: str = "closedwon"
) -> None:
    won = NOW - won_ago
    # A contact per deal: the letters' per-contact cap is not what these tests are about.
    state.contacts[f"2{deal_id}"] = {"email": f"buyer{deal_id}@example.de", "hs_language": "de"}
    state.add_deal(deal_id, [f"2{deal_id}"], dealname=f"Deal {deal_id}", amount="100",
                   deal_currency_code="EUR", dealstage=stage, closedate=iso(won),
                   hs_lastmodifieddate=iso(won + timedelta(seconds=5)))  # fmt: skip


def pd_deal(state: PipedriveState, deal_id: int, won_ago: timedelta, status: str = "won") -> None:
    won = NOW - won_ago
    email = {"value": f"buyer{deal_id}@nowak.example", "primary": True}
    state.persons[str(deal_id)] = {"id": deal_id, "name": "Zofia Nowak", "emails": [email]}
    state.deals[str(deal_id)] = {"id": deal_id, "title": f"Deal {deal_id}", "value": 1000,
                                 "currency": "PLN", "status": status, "person_id": deal_id,
                                 "won_time": iso(won), "update_time": iso(won)}  # fmt: skip


def hubspot_webhook_arrived(runtime: Runtime, deal_id: str, won_ago: timedelta) -> None:
    """What /webhooks/hubspot stores for a stage change (its signature is tested elsewhere)."""
    at = int((NOW - won_ago).timestamp() * 1000)
    event = {"eventId": 1, "subscriptionId": 4001, "portalId": 62515, "occurredAt": at,
             "subscriptionType": "deal.propertyChange", "objectId": int(deal_id),
             "propertyName": "dealstage", "propertyValue": "closedwon"}  # fmt: skip
    raw = RawEvent(f"hs:62515:4001:{deal_id}:1:{at}", json.dumps(event))
    [accepted] = accept_batch(runtime.session_factory, "hubspot", [raw], NOW)
    run_enqueued(runtime, [(INGEST_INBOX, (accepted.inbox_id,))])


def pipedrive_webhook_arrived(
    runtime: Runtime, meta_id: str, deal: int, status: str, previous: str, ago: timedelta
) -> None:
    body = {"meta": {"action": "change", "entity": "deal", "version": "2.0", "id": meta_id,
                     "timestamp": iso(NOW - ago)},
            "data": {"id": deal, "status": status}, "previous": {"status": previous}}  # fmt: skip
    raw = RawEvent(f"pd:1:{meta_id}", json.dumps(body))
    [accepted] = accept_batch(runtime.session_factory, "pipedrive", [raw], NOW)
    run_enqueued(runtime, [(INGEST_INBOX, (accepted.inbox_id,))])


def ingest_added(runtime: Runtime, dispatcher: RecordingDispatcher) -> None:
    """What reconciliation added is enqueued by the scheduler's next sweep: tick, ingest."""
    dispatcher.sent.clear()
    tick.tick(runtime)
    run_enqueued(runtime, [(t, args) for t, args in dispatcher.sent if t == INGEST_INBOX])
    dispatcher.sent.clear()


def letters_for(runtime: Runtime) -> list[tuple[str | None, str]]:
    return sorted((x.deal_id, x.status) for x in all_letters(runtime))


def test_hubspot_a_won_deal_whose_webhook_never_came_is_found_and_planned(
    both: Runtime,
    dispatcher: RecordingDispatcher,
    apis: tuple[str, HubSpotState, str, PipedriveState],
) -> None:
    hs = apis[1]
    for deal_id, ago in (("9001", timedelta(hours=2)), ("9002", timedelta(hours=3)),
                         ("9004", timedelta(hours=1)), ("9005", timedelta(minutes=2))):  # fmt: skip
        hs_deal(hs, deal_id, ago)
    hs_deal(hs, "9003", timedelta(hours=1), stage="closedlost")
    hubspot_webhook_arrived(both, "9001", timedelta(hours=2))
    hs.calls.clear()

    report = run(both, "hubspot", NOW - timedelta(days=3))
    # 9001's webhook came; 9003 is lost; 9005 was won 2 minutes ago: left to its webhook.
    assert (report.found, report.already, report.added) == (3, 1, 2)
    searches = [c for c in hs.calls if c.path == "/crm/v3/objects/deals/search"]
    assert len(searches) == 2  # three matches, two per page: `after` was followed
    filters = {f["propertyName"]: f for f in searches[0].body["filterGroups"][0]["filters"]}
    assert filters["dealstage"] == {
        "propertyName": "dealstage",
        "operator": "IN",
        "values": ["closedwon"],
    }
    since_ms = int((NOW - timedelta(days=3)).timestamp() * 1000)
    assert filters["hs_lastmodifieddate"]["value"] == str(since_ms)  # --since
    assert searches[1].body["after"] == "2"

    ingest_added(both, dispatcher)
    assert letters_for(both) == [("9001", LetterStatus.SCHEDULED), ("9002", LetterStatus.SCHEDULED),
                                 ("9004", LetterStatus.SCHEDULED)]  # fmt: skip


def test_reconciliation_never_adds_a_deal_twice_and_moves_its_watermark(
    both: Runtime,
    clock: FixedClock,
    dispatcher: RecordingDispatcher,
    apis: tuple[str, HubSpotState, str, PipedriveState],
) -> None:
    hs = apis[1]
    hs_deal(hs, "9002", timedelta(hours=3))
    hs_deal(hs, "9005", timedelta(minutes=2))
    first = run(both, "hubspot", NOW - timedelta(days=1))
    assert first.added == 1 and first.until == (NOW - timedelta(minutes=10)).isoformat()
    ingest_added(both, dispatcher)
    dispatcher.sent.clear()
    hs.calls.clear()
    clock.set(NOW + timedelta(minutes=30))
    second = run(both, "hubspot")
    [search] = [c for c in hs.calls if c.path.endswith("/search")]
    watermark = int((NOW - timedelta(minutes=10)).timestamp() * 1000)
    assert search.body["filterGroups"][0]["filters"][1]["value"] == str(watermark)
    # 9002 was modified before the watermark (not even listed); 9005 has settled.
    assert (second.found, second.added) == (1, 1)
    ingest_added(both, dispatcher)
    assert [d for d, _ in letters_for(both)] == ["9002", "9005"]
    # A run over the whole window again (--since): both found, both known, none added.
    third = run(both, "hubspot", NOW - timedelta(days=1))
    assert (third.found, third.already, third.added) == (2, 2, 0)
    with both.session_factory() as session:
        assert len(session.scalars(select(InboxItem.id)).all()) == 2


def test_a_run_waits_while_webhooks_of_that_crm_are_still_in_the_inbox(
    both: Runtime, apis: tuple[str, HubSpotState, str, PipedriveState]
) -> None:
    hs_deal(apis[1], "9002", timedelta(hours=3))
    raw = RawEvent("hs:1:2:9002:3:4", json.dumps({"objectId": 9002}))
    accept_batch(both.session_factory, "hubspot", [raw], NOW)  # pending, not ingested yet
    report = run(both, "hubspot", NOW - timedelta(days=1))
    assert report.skipped and "still being processed" in report.skipped
    assert apis[1].calls == []
    with both.session_factory() as session:
        assert session.scalar(select(CrmSync.reconciled_until)) is None  # nothing moved


def test_pipedrive_a_missed_win_after_a_reopen_is_found_with_cursor_paging(
    both: Runtime,
    dispatcher: RecordingDispatcher,
    apis: tuple[str, HubSpotState, str, PipedriveState],
) -> None:
    pd = apis[3]
    for deal_id, hours in ((77, 5), (78, 4), (79, 3)):
        pd_deal(pd, deal_id, timedelta(hours=hours))
    pd_deal(pd, 80, timedelta(hours=2), status="lost")
    # 77's win came as a webhook; 78's too, but it was reopened since and won again
    # while Pipedrive had banned the URL: that second win was missed.
    pipedrive_webhook_arrived(both, "a", 77, "won", "open", timedelta(hours=5))
    pipedrive_webhook_arrived(both, "b", 78, "won", "open", timedelta(hours=6))
    pipedrive_webhook_arrived(both, "c", 78, "open", "won", timedelta(hours=5))
    pd.calls.clear()
    report = run(both, "pipedrive", NOW - timedelta(days=3))
    assert (report.found, report.already, report.added) == (3, 1, 2)
    lists = [c for c in pd.calls if c.path == "/api/v2/deals"]
    assert [c.query.get("cursor") for c in lists] == [None, ["2"]]
    assert lists[0].query["status"] == ["won"]
    assert lists[0].query["updated_since"] == [iso(NOW - timedelta(days=3)).replace(".000", "")]
    ingest_added(both, dispatcher)
    assert letters_for(both) == [
        ("77", LetterStatus.SCHEDULED),
        ("78", LetterStatus.CANCELLED),  # by the reopen
        ("78", LetterStatus.SCHEDULED),  # the missed second win
        ("79", LetterStatus.SCHEDULED),
    ]
    with both.session_factory() as session:
        rows = session.scalars(select(InboxItem.event_id).order_by(InboxItem.id)).all()
    assert rows[3:] == [
        f"pd::reconcile:78:{iso(NOW - timedelta(hours=4))}",
        f"pd::reconcile:79:{iso(NOW - timedelta(hours=3))}",
    ]


def test_the_first_run_only_marks_the_start_and_thanks_no_earlier_win(
    both: Runtime, apis: tuple[str, HubSpotState, str, PipedriveState]
) -> None:
    hs_deal(apis[1], "9002", timedelta(hours=3))  # won before Thankly was connected
    first = run(both, "hubspot")
    assert first.skipped and first.skipped.startswith("first run")
    assert (first.found, first.added) == (0, 0) and apis[1].calls == []
    with both.session_factory() as session:
        mark = session.scalar(select(CrmSync.reconciled_until))
    assert mark == NOW - timedelta(minutes=10)


def test_the_scheduler_reconciles_each_connected_crm_once_per_interval(
    both: Runtime,
    clock: FixedClock,
    dispatcher: RecordingDispatcher,
    apis: tuple[str, HubSpotState, str, PipedriveState],
) -> None:
    hs = apis[1]
    hs_deal(hs, "9002", timedelta(hours=3))  # won before the connection: never thanked
    tick.tick(both)
    assert len([t for t, _ in dispatcher.sent if t == RECONCILE_CRM]) == 2  # both CRMs
    tick.tick(both)  # the same interval: claimed already
    assert len([t for t, _ in dispatcher.sent if t == RECONCILE_CRM]) == 2
    done = run_enqueued(both, list(dispatcher.sent))
    assert sorted(o for t, _, o in done if t == RECONCILE_CRM) == ["started"] * 2
    dispatcher.sent.clear()

    hs_deal(hs, "9007", -timedelta(minutes=5))  # won after, its webhook lost
    clock.set(NOW + timedelta(minutes=31))
    tick.tick(both)
    jobs = [(t, args) for t, args in dispatcher.sent if t == RECONCILE_CRM]
    assert len(jobs) == 2
    dispatcher.sent.clear()
    done = run_enqueued(both, jobs)
    assert [o for _, _, o in done] == ["reconciled"] * 2
    ingest_added(both, dispatcher)
    assert [d for d, _ in letters_for(both)] == ["9007"]


def test_no_connected_crm_means_no_reconciliation_job(
    runtime: Runtime, dispatcher: RecordingDispatcher
) -> None:
    tick.tick(runtime)
    assert all(task != RECONCILE_CRM for task, _ in dispatcher.sent)
    with pytest.raises(LookupError, match="hubspot is not connected"):
        run(runtime, "hubspot")


@pytest.fixture
def crm_env(
    monkeypatch: pytest.MonkeyPatch, apis: tuple[str, HubSpotState, str, PipedriveState]
) -> dict[str, Any]:
    env = {
        "THANKLY_HUBSPOT_CLIENT_SECRET": "hs-secret",
        "THANKLY_HUBSPOT_TOKEN": HS_TOKEN,
        "THANKLY_HUBSPOT_API_BASE": apis[0],
        "THANKLY_HUBSPOT_WON_STAGES": "closedwon,contractsent",
        "THANKLY_PIPEDRIVE_TOKEN": PD_TOKEN,
        "THANKLY_PIPEDRIVE_API_BASE": apis[2],
        "THANKLY_PUBLIC_URL": "https://thankly.example",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def test_crm_check_shows_the_url_and_each_stage_and_fails_on_a_wrong_one(
    cli: Any, crm_env: dict[str, Any], apis: tuple[str, HubSpotState, str, PipedriveState]
) -> None:
    apis[1].pipelines = [{"id": "default", "label": "Sales Pipeline", "stages": [
        {"id": "closedwon", "label": "Closed won"}, {"id": "closedlost", "label": "Closed lost"},
    ]}]  # fmt: skip
    result = cli("crm", "check", "hubspot")
    assert result.exit_code == 1, result.output
    assert "https://thankly.example/webhooks/hubspot" in result.output
    assert "closedwon is \u201cSales Pipeline: Closed won\u201d" in result.output
    assert "PROBLEM  THANKLY_HUBSPOT_WON_STAGES: no stage 'contractsent'" in result.output
    assert HS_TOKEN not in result.output
    apis[1].pipelines[0]["stages"].append({"id": "contractsent", "label": "Contract sent"})
    assert cli("crm", "check", "hubspot").exit_code == 0
    pipedrive = cli("crm", "check", "pipedrive")
    assert pipedrive.exit_code == 1  # webhook user and password missing
    assert "THANKLY_PIPEDRIVE_WEBHOOK_USER" in pipedrive.output
    assert "API token accepted: Admin at Seller GmbH" in pipedrive.output


def test_crm_reconcile_from_the_command_line(
    cli: Any,
    crm_env: dict[str, Any],
    apis: tuple[str, HubSpotState, str, PipedriveState],
    runtime: Runtime,
) -> None:
    won = iso(datetime.now(NOW.tzinfo) - timedelta(hours=1))  # the command's clock is real
    apis[1].add_deal("9002", ["201"], dealstage="closedwon", closedate=won, hs_lastmodifieddate=won)
    first = cli("crm", "reconcile", "hubspot")
    assert first.exit_code == 0 and "hubspot: first run" in first.output, first.output
    result = cli(
        "crm", "reconcile", "hubspot", "--since", iso(datetime.now(NOW.tzinfo) - timedelta(days=1))
    )
    assert result.exit_code == 0, result.output
    assert "hubspot: 1 won deals" in result.output and "1 added" in result.output
    again = json.loads(cli("crm", "reconcile", "--json", "--since", "2026-01-01").output)
    # The row added above is still pending in the inbox (no worker here): the run waits.
    assert again[0]["source"] == "hubspot" and "still being processed" in again[0]["skipped"]
    assert cli("crm", "reconcile", "pipedrive").exit_code == 1  # no webhook credentials


def test_a_webhook_retried_after_reconciliation_is_the_same_win_and_no_second_letter(
    both: Runtime,
    dispatcher: RecordingDispatcher,
    apis: tuple[str, HubSpotState, str, PipedriveState],
) -> None:
    hs_deal(apis[1], "9002", timedelta(hours=3))
    run(both, "hubspot", NOW - timedelta(days=1))
    ingest_added(both, dispatcher)
    # HubSpot's last retry of the lost webhook gets through now; the stage change it
    # reports happened a few seconds before the close date reconciliation used.
    hubspot_webhook_arrived(both, "9002", timedelta(hours=3, seconds=4))
    assert [d for d, _ in letters_for(both)] == ["9002"]
    with both.session_factory() as session:
        from worker.models import Event

        late = session.scalars(select(Event).order_by(Event.id.desc()).limit(1)).one()
    assert late.external_id.startswith("hs:62515:4001:9002")
    [verdict] = late.decisions or []
    assert verdict["outcome"] == "no letter" and "closed already" in verdict["reason"]
