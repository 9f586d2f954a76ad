"""Through a real Redis broker and a real Celery worker (fakeredis's TCP server if absent)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from tests.conftest import NOW, SECRET, make_settings
from tests.helpers import count_rows, event_doc, signed
from worker.celery_app import app as celery
from worker.clock import FixedClock
from worker.http.app import create_app
from worker.queue import SEND_LETTER
from worker.runtime import Runtime, build_runtime, set_runtime
from worker.scheduling import tick
from worker.scheduling.embedded import celery_worker_thread


@pytest.fixture
def redis_runtime(
    tmp_path: Path, db_url: str, redis_url: str, clock: FixedClock
) -> Iterator[Runtime]:
    settings = make_settings(tmp_path, db_url, broker_url=redis_url)
    runtime = build_runtime(settings, clock=clock)
    set_runtime(runtime)
    yield runtime
    set_runtime(None)
    runtime.engine.dispose()


def wait_for_events(factory: sessionmaker[Session], expected: int, timeout: float = 20) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events = count_rows(factory)[1]
        if events >= expected:
            return events
        time.sleep(0.1)
    return count_rows(factory)[1]


def test_accepted_event_is_ingested_by_a_worker_via_redis(redis_runtime: Runtime) -> None:
    with celery_worker_thread(celery), TestClient(create_app(redis_runtime)) as client:
        body, headers = signed(event_doc(), SECRET, NOW, "evt_redis")
        assert client.post("/webhooks/generic", content=body, headers=headers).status_code == 202
        assert wait_for_events(redis_runtime.session_factory, 1) == 1
        # A redelivered webhook is a duplicate; no second event, even after a while.
        assert client.post("/webhooks/generic", content=body, headers=headers).status_code == 200
        time.sleep(0.5)
        assert count_rows(redis_runtime.session_factory) == (1, 1)


def test_redis_flushed_after_accept_loses_nothing(
    redis_runtime: Runtime, redis_url: str, clock: FixedClock
) -> None:
    with TestClient(create_app(redis_runtime)) as client:
        body, headers = signed(event_doc(), SECRET, NOW, "evt_lost")
        assert client.post("/webhooks/generic", content=body, headers=headers).status_code == 202
    broker = redis.Redis.from_url(redis_url)
    assert broker.llen("thankly") == 1  # the ingest message is waiting in Redis...
    broker.flushdb()  # ...and Redis loses it (restart without persistence, eviction, FLUSHDB)
    broker.close()

    with celery_worker_thread(celery):
        time.sleep(1)
        assert count_rows(redis_runtime.session_factory) == (1, 0)  # nothing to consume
        clock.set(NOW + timedelta(seconds=redis_runtime.settings.sweep_grace_seconds + 1))
        assert tick.tick(redis_runtime).inbox_requeued == 1
        assert wait_for_events(redis_runtime.session_factory, 1) == 1


def test_webhook_is_accepted_while_redis_is_down(
    tmp_path: Path, db_url: str, clock: FixedClock
) -> None:
    settings = make_settings(tmp_path, db_url, broker_url="redis://127.0.0.1:1/0")
    runtime = build_runtime(settings, clock=clock)
    try:
        with TestClient(create_app(runtime)) as client:
            body, headers = signed(event_doc(), SECRET, NOW, "evt_down")
            started = time.monotonic()
            response = client.post("/webhooks/generic", content=body, headers=headers)
            assert response.status_code == 202  # durable in the inbox; the sweeper enqueues later
            assert time.monotonic() - started < 15  # bounded: the broker is not waited on forever
        assert count_rows(runtime.session_factory) == (1, 0)
    finally:
        runtime.engine.dispose()


def test_a_claimed_batch_reaches_redis_in_one_round_trip(
    redis_runtime: Runtime, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    dispatcher = redis_runtime.dispatcher
    dispatcher.send(SEND_LETTER, 1)  # the producer's first publish also declares the queue
    writes: list[int] = []
    original: Any = redis.connection.AbstractConnection.send_packed_command

    def counted(self: Any, command: Any, check_health: bool = True) -> None:
        writes.append(1)
        original(self, command, check_health)

    monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", counted)
    dispatcher.send_many(SEND_LETTER, [(i,) for i in range(2, 52)])
    assert len(writes) == 1  # fifty publishes, one write to Redis
    for i in range(52, 62):
        dispatcher.send(SEND_LETTER, i)
    assert len(writes) == 11  # one at a time, one write each (what the batch saves)

    broker = redis.Redis.from_url(redis_url)
    queued = [json.loads(m)["headers"]["argsrepr"] for m in broker.lrange("thankly", 0, -1)]
    broker.close()
    assert sorted(int(a.strip("[](),")) for a in queued) == list(range(1, 62))
