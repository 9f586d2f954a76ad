"""`GET /metrics` scraped as Prometheus would: counters move with what happened, the
database gauges say what is there now, a token guards it when set, and counters written by
several processes add up."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from tests.conftest import NOW, SECRET, make_settings
from tests.helpers import all_letters, event_doc, signed
from worker.clock import FixedClock
from worker.http.app import create_app
from worker.jobs import run_enqueued
from worker.queue import RecordingDispatcher
from worker.runtime import Runtime, build_runtime
from worker.scheduling import tick

DOCUMENTED = {
    "thankly_webhooks", "thankly_jobs", "thankly_letter_transitions", "thankly_send_attempts",
    "thankly_send_seconds", "thankly_ingest_lag_seconds", "thankly_tick_seconds",
    "thankly_letters", "thankly_scheduler_lag_seconds", "thankly_inbox_pending",
    "thankly_crm_outbox_backlog",
}  # fmt: skip
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(client: TestClient, **headers: str) -> Samples:
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        if family.name.startswith("thankly"):  # every name of ours is documented
            # (prometheus-client adds a `_created` series to each counter and histogram)
            assert family.name.removesuffix("_created") in DOCUMENTED, family.name
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_a_scrape_follows_a_letter_from_webhook_to_sent(
    runtime: Runtime, client: TestClient, clock: FixedClock, dispatcher: RecordingDispatcher
) -> None:
    before = scrape(client)
    doc = event_doc()
    doc["data"]["deal"] = {"id": "d-1", "amount": 1200, "currency": "EUR"}
    body, headers = signed(doc, SECRET, NOW, "evt_m1")
    assert client.post("/webhooks/generic", content=body, headers=headers).status_code == 202
    assert client.post("/webhooks/generic", content=body, headers=headers).status_code == 200
    bad = {**headers, "webhook-signature": "v1,AAAA"}
    assert client.post("/webhooks/generic", content=body, headers=bad).status_code == 401
    assert client.post("/webhooks/nosuch", content=body, headers=headers).status_code == 404
    run_enqueued(runtime, list(dispatcher.sent))
    [letter] = all_letters(runtime)

    clock.set(letter.due_at + timedelta(minutes=3))
    waiting = scrape(client)
    assert value(waiting, "thankly_scheduler_lag_seconds") == 180.0  # due, not yet claimed
    assert value(waiting, "thankly_letters", status="scheduled") == 1
    dispatcher.sent.clear()
    tick.tick(runtime)
    run_enqueued(runtime, list(dispatcher.sent))
    after = scrape(client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    webhooks = "thankly_webhooks_total"
    assert delta(webhooks, source="generic", outcome="accepted", status="") == 1
    assert delta(webhooks, source="generic", outcome="duplicate", status="") == 1
    assert delta(webhooks, source="generic", outcome="rejected", status="401") == 1
    assert delta(webhooks, source="unknown", outcome="rejected", status="404") == 1
    assert delta("thankly_jobs_total", task="thankly.ingest_inbox", outcome="ingested") == 1
    assert delta("thankly_jobs_total", task="thankly.send_letter", outcome="sent") == 1
    for status in ("scheduled", "queued", "sent"):
        assert delta("thankly_letter_transitions_total", to=status) == 1, status
    assert delta("thankly_send_attempts_total", outcome="sent", error_class="none") == 1
    assert delta("thankly_send_seconds_count") == 1
    assert delta("thankly_ingest_lag_seconds_count") == 1
    assert value(after, "thankly_letters", status="sent") == 1
    assert value(after, "thankly_letters", status="scheduled") == 0
    assert value(after, "thankly_scheduler_lag_seconds") == 0
    assert value(after, "thankly_crm_outbox_backlog", crm="generic") == 1  # email.sent, not yet
    assert value(after, "thankly_inbox_pending") == 0


@pytest.fixture
def guarded(tmp_path: Path, db_url: str, clock: FixedClock) -> Iterator[TestClient]:
    settings = make_settings(tmp_path, db_url, metrics_token=SecretStr("m" * 30))
    runtime = build_runtime(settings, clock=clock, dispatcher=RecordingDispatcher())
    with TestClient(create_app(runtime)) as client:
        yield client
    runtime.engine.dispose()


def test_with_a_token_set_a_scrape_must_bring_it(guarded: TestClient) -> None:
    assert guarded.get("/metrics").status_code == 401
    assert (
        guarded.get("/metrics", headers={"authorization": "Bearer " + "m" * 29}).status_code == 401
    )
    assert scrape(guarded, authorization="Bearer " + "m" * 30)  # any figures at all


PROCESS = """
import sys
from worker.metrics import JOBS
JOBS.labels("thankly.send_letter", "sent").inc(int(sys.argv[1]))
"""
RENDER = """
import sys
from worker.clock import SystemClock
from worker.db import make_engine, make_session_factory
from worker.metrics import render
sys.stdout.write(render(make_session_factory(make_engine(sys.argv[1])), SystemClock()).decode())
"""


def test_counters_of_several_processes_add_up_in_multiprocess_mode(
    runtime: Runtime, tmp_path: Path
) -> None:
    folder = tmp_path / "prometheus"
    folder.mkdir()
    env = {"PROMETHEUS_MULTIPROC_DIR": str(folder), "PATH": "/usr/bin:/bin"}
    for count in ("2", "3"):
        subprocess.run([sys.executable, "-c", PROCESS, count], env=env, check=True, timeout=60)
    url = runtime.engine.url.render_as_string(False)
    text = subprocess.run(
        [sys.executable, "-c", RENDER, url], env=env, check=True, timeout=60,
        capture_output=True, text=True,
    ).stdout  # fmt: skip
    families = {f.name: f for f in text_string_to_metric_families(text)}
    [sample] = [s for s in families["thankly_jobs"].samples if s.name == "thankly_jobs_total"]
    assert sample.value == 5.0
    assert "thankly_letters" in families  # the database gauges come along
