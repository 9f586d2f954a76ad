"""Experiments in CRM write-back (issue 16): every activity of an experiment's letter names
the experiment and the arm in what each CRM receives (HubSpot, Pipedrive, Bitrix24,
amoCRM, and the signed `http` webhook), a holdout letter's `email.held_out` activity is a
note in each, and a letter outside experiments says nothing of experiments.

The letters are planned from real events under an experiment's rules, `email.sent` is
what sending records, `email.held_out` what the planner records, and the other kinds are
recorded as the tracking and bounce paths do (worker.crm.activities.record)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import SecretStr
from sqlalchemy import select

from tests.conftest import NOW, make_settings
from tests.crm.amocrm_api import TOKEN as AMO_TOKEN
from tests.crm.amocrm_api import amocrm_api
from tests.crm.bitrix24_api import bitrix24_api
from tests.crm.hubspot_api import TOKEN as HS_TOKEN
from tests.crm.hubspot_api import hubspot_api
from tests.crm.imitation import Call, Imitation
from tests.crm.pipedrive_api import TOKEN as PD_TOKEN
from tests.crm.pipedrive_api import pipedrive_api
from tests.crm_server import CRM_SECRET, crm_server
from tests.helpers import ingest_doc, run_worker
from worker.clock import FixedClock
from worker.crm.activities import KINDS, record
from worker.crm.adapters import CrmAdapter, LogCrm
from worker.crm.amocrm.api import from_settings as amocrm_from_settings
from worker.crm.amocrm.writeback import AmoCrmCrm
from worker.crm.bitrix24.api import from_settings as bitrix24_from_settings
from worker.crm.bitrix24.writeback import Bitrix24Crm
from worker.crm.hubspot.api import from_settings as hubspot_from_settings
from worker.crm.hubspot.writeback import HubSpotCrm
from worker.crm.notes import experiment_line, note_html, note_lines, note_text
from worker.crm.pipedrive.api import from_settings as pipedrive_from_settings
from worker.crm.pipedrive.writeback import PipedriveCrm
from worker.delivery.send import send_letter
from worker.delivery.senders import MemorySender
from worker.experiments.assignment import choose_arm
from worker.models import CrmActivity, Letter, LetterStatus
from worker.planning.rules_model import Experiment
from worker.queue import DELIVER_ACTIVITY, RecordingDispatcher
from worker.runtime import Runtime, build_runtime
from worker.scheduling import tick

RULES = """\
defaults:
  timezone: UTC
rules:
  - name: deal-closed-thanks
    on: deal.closed
    letter: deal_closed
    delay: 24h
    experiment:
      name: deal-thanks-q1
      variants: {a: deal_closed, b: {letter: deal_closed, variant: short}}
      holdout: 50%
      note_held_out: true
  - {name: referral-thanks, on: referral.made, letter: referral_made, delay: 24h}
"""
EXPERIMENT = Experiment.model_validate(yaml.safe_load(RULES)["rules"][0]["experiment"])

# What each CRM shows for the arm, in its language: HubSpot and Pipedrive in English,
# Bitrix24 and amoCRM (their portals here are Russian) in Russian.
LINE = {
    ("en", "b"): "Experiment deal-thanks-q1, variant b.",
    ("en", "holdout"): "Experiment deal-thanks-q1: holdout (no letter sent).",
    ("ru", "b"): "Эксперимент deal-thanks-q1, вариант b.",
    ("ru", "holdout"): "Эксперимент deal-thanks-q1: контрольная группа (письмо не отправлялось).",
}
HELD_BACK = {
    "en": "Thankly held back “deal_closed” from {email}: the customer is in the holdout of "
    "experiment deal-thanks-q1, so no letter was sent.",
    "ru": "Thankly не отправлял письмо «deal_closed» на {email}: клиент в контрольной группе "
    "эксперимента deal-thanks-q1.",
}
# Words no entry of a letter outside experiments may hold.
NO_EXPERIMENT = ("xperiment", "ксперимент", "variant", "вариант", "holdout", "контрольн", "None")
FOLLOWING = ("email.opened", "email.clicked", "email.failed", "contact.unsubscribed")


def contact_in(arm: str) -> str:
    """An address the experiment puts in `arm` (the arm is a hash of the address)."""
    for i in range(1000):
        email = f"katrin.{i}@example.de"
        if choose_arm(EXPERIMENT, email) == arm:
            return email
    raise AssertionError(f"no address lands in {arm}")


def event(email: str, kind: str = "deal.closed", deal: str = "9001") -> dict[str, Any]:
    """A generic event carrying ids every CRM here accepts (digits)."""
    return {
        "type": kind,
        "timestamp": NOW.isoformat().replace("+00:00", "Z"),
        "data": {
            "contact": {"id": "201", "email": email, "first_name": "Katrin", "locale": "en"},
            "deal": {"id": deal, "title": "Annual plan", "amount": "5000", "currency": "EUR"},
        },
    }


MakeRuntime = Callable[..., Runtime]


@pytest.fixture
def make_runtime(tmp_path: Path, db_url: str, clock: FixedClock) -> Iterator[MakeRuntime]:
    """make_runtime(**settings): a runtime on the test's database under RULES."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    built: list[Runtime] = []

    def make(**overrides: Any) -> Runtime:
        runtime = build_runtime(
            make_settings(tmp_path, db_url, rules_file=rules, **overrides),
            clock=clock,
            dispatcher=RecordingDispatcher(),
            sender=MemorySender(),
            sleep=lambda _: None,
        )
        built.append(runtime)
        return runtime

    yield make
    for runtime in built:
        runtime.engine.dispose()


def plan_one(runtime: Runtime, doc: dict[str, Any], msg_id: str) -> Letter:
    [letter] = ingest_doc(runtime, doc, msg_id)
    return letter


def send(runtime: Runtime, clock: FixedClock, letter: Letter) -> None:
    clock.set(letter.due_at)
    tick.tick(runtime)
    assert send_letter(runtime.delivery(), letter.id) == "sent"


def payloads(runtime: Runtime, letter: Letter) -> dict[str, dict[str, Any]]:
    """{kind: payload} of the letter's activities, as the outbox hands them to a CRM."""
    with runtime.session_factory() as session:
        rows = session.scalars(
            select(CrmActivity).where(CrmActivity.letter_id == letter.id).order_by(CrmActivity.id)
        )
        return {row.kind: row.payload for row in rows}


def what_followed(runtime: Runtime, letter: Letter) -> None:
    """Opened, clicked, failed and unsubscribed, recorded as their own paths record them."""
    details: dict[str, dict[str, Any]] = {
        "email.opened": {"user_agent": "Mozilla/5.0"},
        "email.clicked": {"url": "https://shop.example/next?a=1&b=2"},
        "email.failed": {"error": "550 5.1.1 <katrin> no such user"},
        "contact.unsubscribed": {"via": "one-click link"},
    }
    with runtime.session_factory.begin() as session:
        row = session.get_one(Letter, letter.id)
        for n, kind in enumerate(FOLLOWING, start=1):
            at = row.due_at + timedelta(minutes=n)
            assert record(session, row, kind, f"{kind}:{row.id}", at, details[kind])


# --- the four native CRMs, each at its imitation -------------------------------------------


class Native:
    """A native CRM's adapter at its imitation, and how to read what it was sent."""

    def __init__(self, name: str, adapter: CrmAdapter, state: Imitation, language: str) -> None:
        self.name, self.adapter, self.state, self.language = name, adapter, state, language

    def writes(self) -> list[tuple[str, str]]:
        """(path or method, text) of every entry written, read from the requests received."""
        found: list[tuple[str, str]] = []
        for call in self.state.calls:
            found += _written(self.name, call)
        return found


def _written(name: str, call: Call) -> list[tuple[str, str]]:
    if call.method != "POST":
        return []
    body = call.body
    if name == "hubspot" and call.path in ("/crm/v3/objects/emails", "/crm/v3/objects/notes"):
        props = body["properties"]
        return [(call.path, str(props.get("hs_note_body") or props.get("hs_email_text")))]
    if name == "pipedrive" and call.path == "/api/v2/activities":
        return [(call.path, str(body["note"]))]
    if name == "pipedrive" and call.path == "/api/v1/notes":
        return [(call.path, str(body["content"]))]
    if name == "bitrix24" and call.path.endswith("/crm.timeline.comment.add.json"):
        fields = body["fields"]
        return [(f"{fields['ENTITY_TYPE']}:{fields['ENTITY_ID']}", str(fields["COMMENT"]))]
    if name == "amocrm" and call.path == "/api/v4/leads/notes":
        return [(call.path, str(note["params"]["text"])) for note in body]
    return []


@pytest.fixture(params=["hubspot", "pipedrive", "bitrix24", "amocrm"])
def native(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Native]:
    name = request.param
    if name == "hubspot":
        with hubspot_api() as (url, hs):
            settings = make_settings(
                tmp_path, "sqlite://", hubspot_token=SecretStr(HS_TOKEN), hubspot_api_base=url
            )
            yield Native(name, HubSpotCrm(hubspot_from_settings(settings)), hs, "en")
    elif name == "pipedrive":
        with pipedrive_api() as (url, pd):
            settings = make_settings(
                tmp_path, "sqlite://", pipedrive_token=SecretStr(PD_TOKEN), pipedrive_api_base=url
            )
            yield Native(name, PipedriveCrm(pipedrive_from_settings(settings)), pd, "en")
    elif name == "bitrix24":
        with bitrix24_api() as (url, b24):
            settings = make_settings(tmp_path, "sqlite://", bitrix24_rest_url=SecretStr(url))
            yield Native(name, Bitrix24Crm(bitrix24_from_settings(settings), "ru"), b24, "ru")
    else:
        with amocrm_api() as (url, amo):
            settings = make_settings(
                tmp_path,
                "sqlite://",
                amocrm_token=SecretStr(AMO_TOKEN),
                amocrm_api_base=url,
                amocrm_subdomain="romashka",
            )
            yield Native(name, AmoCrmCrm(amocrm_from_settings(settings), "ru"), amo, "ru")


def entries_per_activity(native: Native) -> int:
    return 2 if native.name == "bitrix24" else 1  # Bitrix24: on the deal and the contact


def test_every_activity_of_a_variants_letter_names_the_experiment_and_arm(
    make_runtime: MakeRuntime, clock: FixedClock, native: Native
) -> None:
    runtime = make_runtime()
    letter = plan_one(runtime, event(contact_in("b")), "evt_b")
    assert (letter.experiment, letter.arm) == ("deal-thanks-q1", "b")
    send(runtime, clock, letter)
    what_followed(runtime, letter)
    activities = payloads(runtime, letter)
    assert list(activities) == ["email.sent", *FOLLOWING]
    for kind, payload in activities.items():
        native.adapter.deliver(f"{kind}:{letter.id}", payload)

    writes = native.writes()
    assert len(writes) == len(activities) * entries_per_activity(native)
    line = LINE[(native.language, "b")]
    for _, text in writes:
        assert line in text, text
        assert "None" not in text and "holdout" not in text
    if native.name == "hubspot":
        # The letter is an email engagement; the line follows the letter's own text.
        path, text = writes[0]
        assert path == "/crm/v3/objects/emails"
        letter_text = activities["email.sent"]["data"]["details"]["text"]
        assert text == f"{letter_text}\n\n{line}"
        assert all(p == "/crm/v3/objects/notes" for p, _ in writes[1:])
    if native.name == "pipedrive":
        path, text = writes[0]
        assert path == "/api/v2/activities"
        assert f"<p>{line}</p><p><small>thankly:email.sent:{letter.id}</small></p>" in text
    if native.name in ("bitrix24", "amocrm"):
        # The line comes before the marker a retry looks for, which stays last.
        for _, text in writes:
            assert text.split("\n")[-2:] == [line, text.split("\n")[-1]]
            assert text.split("\n")[-1].startswith("thankly:")


def test_a_held_out_letter_is_a_note_that_names_the_holdout(
    make_runtime: MakeRuntime, clock: FixedClock, native: Native
) -> None:
    runtime = make_runtime()
    email = contact_in("holdout")
    letter = plan_one(runtime, event(email), "evt_h")
    assert (letter.status, letter.arm) == (LetterStatus.HELD_OUT, "holdout")
    [(kind, payload)] = payloads(runtime, letter).items()  # what the planner recorded
    assert kind == "email.held_out"
    native.adapter.deliver(f"held_out:{letter.message_id}", payload)

    writes = native.writes()
    assert len(writes) == entries_per_activity(native)
    for path, text in writes:
        if native.name == "hubspot":
            assert path == "/crm/v3/objects/notes"  # a note, never an email engagement
        if native.name == "pipedrive":
            assert path == "/api/v1/notes"
        assert HELD_BACK[native.language].format(email=email) in text, text
        assert LINE[(native.language, "holdout")] in text
        assert "None" not in text
    if native.name == "bitrix24":
        assert [p for p, _ in writes] == ["deal:9001", "contact:201"]
    assert len([c for c in native.state.calls if c.method == "POST"]) == len(writes)


def test_a_letter_outside_experiments_says_nothing_of_experiments(
    make_runtime: MakeRuntime, clock: FixedClock, native: Native
) -> None:
    runtime = make_runtime()
    letter = plan_one(runtime, event(contact_in("b"), "referral.made", "9002"), "evt_r")
    assert (letter.experiment, letter.arm) == (None, None)
    send(runtime, clock, letter)
    what_followed(runtime, letter)
    activities = payloads(runtime, letter)
    for kind, payload in activities.items():
        native.adapter.deliver(f"{kind}:{letter.id}", payload)

    assert len(native.writes()) == len(activities) * entries_per_activity(native)
    for call in native.state.calls:
        sent = json.dumps(call.body, ensure_ascii=False)
        assert not [word for word in NO_EXPERIMENT if word in sent], sent


# --- the http adapter and the log adapter ----------------------------------------------------


def test_the_signed_webhook_carries_the_experiment_and_arm_and_the_held_out_note(
    make_runtime: MakeRuntime, clock: FixedClock
) -> None:
    with crm_server() as (crm, url):
        runtime = make_runtime(
            crm="http", crm_url=url, crm_secret=SecretStr(CRM_SECRET), crm_retry_wait_seconds=0
        )
        variant = plan_one(runtime, event(contact_in("b")), "evt_b")
        held = plan_one(runtime, event(contact_in("holdout"), deal="9003"), "evt_h")
        outside = plan_one(runtime, event(contact_in("a"), "referral.made"), "evt_r")
        held_key = f"held_out:{held.message_id}"

        # Before the held-out letter's due time the CRM hears nothing of it.
        run_worker(runtime, clock, 3, timedelta(minutes=10))
        assert crm.accepted == {}

        send(runtime, clock, variant)
        send(runtime, clock, outside)
        # Ten-minute steps: an activity a sending tick claimed is claimed again after its
        # lease, as in production when a task is lost.
        done = run_worker(runtime, clock, 4, timedelta(minutes=10))
        assert [o for task, _, o in done if task == DELIVER_ACTIVITY] == ["delivered"] * 3
        assert crm.rejected == []  # every envelope's signature checked out
        assert set(crm.posts.values()) == {1}

    assert set(crm.accepted) == {f"sent:{variant.id}", held_key, f"sent:{outside.id}"}
    sent = crm.accepted[f"sent:{variant.id}"]
    assert sent["type"] == "email.sent"
    assert (sent["data"]["experiment"], sent["data"]["arm"]) == ("deal-thanks-q1", "b")
    note = crm.accepted[held_key]
    assert note["type"] == "email.held_out"
    assert note["timestamp"] == held.due_at.isoformat().replace("+00:00", "Z")
    assert (note["data"]["experiment"], note["data"]["arm"]) == ("deal-thanks-q1", "holdout")
    assert note["data"]["details"] == {"experiment": "deal-thanks-q1", "arm": "holdout"}
    assert note["data"]["message_id"] == held.message_id
    plain = crm.accepted[f"sent:{outside.id}"]["data"]
    assert (plain["experiment"], plain["arm"]) == (None, None)  # JSON null, not "None"


def test_the_log_adapter_takes_a_held_out_activity(
    make_runtime: MakeRuntime, caplog: pytest.LogCaptureFixture
) -> None:
    runtime = make_runtime()
    letter = plan_one(runtime, event(contact_in("holdout")), "evt_h")
    [payload] = payloads(runtime, letter).values()
    with caplog.at_level(logging.INFO, logger="worker.crm.adapters"):
        LogCrm().deliver(f"held_out:{letter.message_id}", payload)
    assert "email.held_out" in caplog.text


# --- the words themselves --------------------------------------------------------------------


def data(**extra: Any) -> dict[str, Any]:
    return {
        "letter": "deal_closed",
        "subject": "Thanks, Katrin <3",
        "contact": {"id": "201", "email": "katrin@example.de"},
        "details": {},
        "experiment": None,
        "arm": None,
    } | extra


@pytest.mark.parametrize("language", ["en", "ru"])
@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_has_words_in_both_languages_with_and_without_an_experiment(
    kind: str, language: str
) -> None:
    named = note_lines(kind, data(experiment="deal-thanks-q1", arm="b"), language)
    assert named[-1] == LINE[(language, "b")]
    assert "None" not in "".join(named) and "experiment ?" not in "".join(named)
    if kind != "email.held_out":  # which only a letter in an experiment has
        plain = note_lines(kind, data(), language)
        assert named[:-1] == plain
        assert not [word for word in NO_EXPERIMENT if word in "".join(plain)]
    held = note_lines(kind, data(experiment="deal-thanks-q1", arm="holdout"), language)
    assert held[-1] == LINE[(language, "holdout")]


def test_a_kind_without_words_is_said_plainly_and_names_are_escaped_in_html() -> None:
    said = note_lines("email.bounced", data(), "ru")
    assert said == ["Thankly: email.bounced для письма «Thanks, Katrin <3»."]
    odd = data(experiment="q1<script>", arm="b&c")
    body = note_html("email.opened", odd, "thankly:opened:1")
    assert "Experiment q1&lt;script&gt;, variant b&amp;c." in body and "<script>" not in body
    assert note_text("email.opened", odd, "thankly:opened:1").endswith(
        "Experiment q1<script>, variant b&c.\nthankly:opened:1"
    )
    # Only an experiment and an arm together make the line; the held-out details alone do.
    assert experiment_line(data(experiment="deal-thanks-q1")) is None
    held = data(details={"experiment": "deal-thanks-q1", "arm": "holdout"})
    assert experiment_line(held) == LINE[("en", "holdout")]
