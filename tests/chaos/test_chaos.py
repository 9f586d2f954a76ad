"""`make chaos`: events through the real stack while it is being broken, and the proof that
nothing was lost and nothing went out twice.

The stack: `thankly api`, two `thankly worker` process groups, `thankly scheduler`, a Redis
server of its own, a throwaway PostgreSQL database, an SMTP sink in its own process and a
stand-in CRM. While 5,000 signed webhooks arrive (each sender retries on 5xx and on
connection errors, as CRMs do), a driver SIGKILLs a worker process group every 10-15 s,
flushes Redis once, restarts Redis once and ends every database connection once. The sink
answers 451 to ~10% of messages, 550 to ~1%, and drops the connection after DATA for ~1%;
the CRM answers 500 or 429 to ~20% of posts.

Excluded from `make test` (mark `chaos`); run with `make chaos` (THANKLY_CHAOS_EVENTS
changes the number of events).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, func, select
from sqlalchemy.pool import NullPool

from tests.chaos.stack import RedisServer, Stack, throwaway_postgres
from tests.conftest import SECRET, free_port
from tests.crm_server import CRM_SECRET, Crm, crm_server
from tests.helpers import terminate_connections
from worker.intake.signatures import signed_headers
from worker.migrate import upgrade
from worker.models import ActivityStatus, CrmActivity, InboxItem, Letter

pytestmark = pytest.mark.chaos

EVENTS = int(os.environ.get("THANKLY_CHAOS_EVENTS", "5000"))
TERMINAL = {"sent", "failed", "unknown", "suppressed", "cancelled"}
SETTLE_TIMEOUT = 420.0


def event(i: int, run: str) -> dict[str, Any]:
    return {
        "type": "deal.closed",
        "timestamp": datetime.now(UTC).isoformat(),
        "data": {
            "contact": {"id": f"c{i}", "email": f"chaos{i}@example.org", "first_name": "Anna"},
            "deal": {"id": f"{run}-d{i}", "number": str(i), "amount": "500", "currency": "EUR"},
        },
    }


def post_with_retries(client: httpx.Client, i: int, run: str) -> bool:
    """One webhook, retried like a CRM retries: on 5xx and on connection errors."""
    body = json.dumps(event(i, run)).encode()
    for attempt in range(60):
        headers = signed_headers(SECRET, f"{run}-evt-{i}", int(time.time()), body)
        headers["content-type"] = "application/json"
        try:
            response = client.post("/webhooks/generic", content=body, headers=headers)
            if response.status_code in (200, 202):
                return True
            if response.status_code < 500 and response.status_code != 429:
                raise AssertionError(f"event {i}: {response.status_code} {response.text}")
        except httpx.HTTPError:
            pass
        time.sleep(min(0.2 * 2**attempt, 3.0))
    return False


def settle(url: str, expected: int, timeout: float) -> dict[str, int]:
    """Waits until every accepted event is processed, every letter is in a final state and
    every CRM activity is delivered (or given up); returns letters by status."""
    engine = create_engine(url, poolclass=NullPool)  # the run ends database sessions
    deadline = time.monotonic() + timeout
    try:
        while True:
            with engine.connect() as conn:
                inbox = conn.execute(
                    select(InboxItem.status, func.count()).group_by(InboxItem.status)
                ).all()
                letters = dict(
                    conn.execute(select(Letter.status, func.count()).group_by(Letter.status)).all()
                )
                activities = conn.execute(
                    select(func.count())
                    .select_from(CrmActivity)
                    .where(CrmActivity.status != ActivityStatus.DELIVERED)
                ).scalar_one()
            processed = sum(n for status, n in inbox if status == "processed")
            done = sum(n for status, n in letters.items() if status in TERMINAL)
            if processed >= expected and done == sum(letters.values()) and not activities:
                return letters
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"not settled after {timeout:.0f} s: inbox {inbox}, letters {letters}, "
                    f"{activities} CRM activities not delivered"
                )
            time.sleep(1)
    finally:
        engine.dispose()


def sink_lines(log: Path) -> list[tuple[str, str]]:
    if not log.exists():
        return []
    return [tuple(line.split(" ", 1)) for line in log.read_text().splitlines()]  # type: ignore[misc]


def listed(stack: Stack, status: str) -> set[int]:
    """Ids of the letters the CLI lists with this status (every page)."""
    found: set[int] = set()
    page = 1
    while True:
        out = subprocess.run(
            [sys.executable, "-m", "worker.cli", "letters", "list", "--status", status,
             "--limit", "500", "--page", str(page), "--json"],
            env=stack.env, capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        rows = json.loads(out)
        rows = rows["letters"] if isinstance(rows, dict) else rows
        found |= {row["id"] for row in rows}
        if len(rows) < 500:
            return found
        page += 1


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[Stack, RedisServer, Crm, str, Path]]:
    redis_server = RedisServer(tmp_path)
    redis_server.start()
    sink_port, sink_log = free_port(), tmp_path / "sink.log"
    sink = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.smtp_sink", "--port", str(sink_port), "--log",
         str(sink_log), "--tempfail", "0.10", "--reject", "0.01", "--drop", "0.01"],
        cwd=Path(__file__).resolve().parents[2], stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert sink.stdout is not None
    sink.stdout.readline()
    with throwaway_postgres(tmp_path) as url, crm_server() as (crm, crm_url):
        upgrade(url)
        env = {k: v for k, v in os.environ.items() if not k.startswith("THANKLY_")}
        env |= {
            "THANKLY_DATABASE_URL": url,
            "THANKLY_BROKER_URL": redis_server.url,
            "THANKLY_SMTP_URL": f"smtp://127.0.0.1:{sink_port}?timeout=10",
            "THANKLY_MAIL_FROM": "Chaos Shop <thanks@shop.example>",
            "THANKLY_SECRET_KEY": "c" * 40,
            "THANKLY_WEBHOOK_SECRETS": SECRET,
            "THANKLY_CRM": "http",
            "THANKLY_CRM_URL": crm_url,
            "THANKLY_CRM_SECRET": CRM_SECRET,
            "THANKLY_RULES_FILE": "config/rules.demo.yaml",
            "THANKLY_VAR_DIR": str(tmp_path / "var"),
            "THANKLY_SWEEP_INTERVAL_SECONDS": "1",
            "THANKLY_SWEEP_GRACE_SECONDS": "5",
            "THANKLY_SENDING_TIMEOUT_SECONDS": "30",
            "THANKLY_RETRY_DELAY_SECONDS": "1",
            "THANKLY_SMTP_RETRY_WAIT_SECONDS": "0.2",
            "THANKLY_CRM_RETRY_WAIT_SECONDS": "0.2",
            "THANKLY_CRM_LEASE_SECONDS": "90",
            "THANKLY_CRM_RECONCILE_MINUTES": "0",
            "THANKLY_REPLAY_RATE_PER_SECOND": "50",
            "THANKLY_LOG_LEVEL": "warning",
        }
        stack = Stack(env, tmp_path)
        stack.start()
        try:
            yield stack, redis_server, crm, url, sink_log
        finally:
            stack.stop()
            redis_server.stop()
            sink.terminate()
            sink.wait(timeout=10)


def test_nothing_lost_nothing_twice_while_the_stack_is_broken(
    stack: tuple[Stack, RedisServer, Crm, str, Path],
) -> None:
    the_stack, redis_server, crm, url, sink_log = stack
    run = uuid.uuid4().hex[:8]
    crm.fail_share = 0.2
    done = threading.Event()
    faults: list[str] = []
    started = time.monotonic()

    def driver() -> None:
        rng = random.Random(3)
        plan = {15.0: "flush", 25.0: "terminate", 35.0: "restart"}
        next_kill = started + rng.uniform(10, 15)
        while not done.wait(0.2):
            elapsed = time.monotonic() - started
            for at, fault in list(plan.items()):
                if elapsed >= at:
                    del plan[at]
                    if fault == "flush":
                        redis_server.flush()
                    elif fault == "terminate":
                        faults.append(f"ended {terminate_connections(url)} database sessions")
                    else:
                        redis_server.stop()
                        time.sleep(2)
                        redis_server.start()
                    faults.append(f"{fault} at {elapsed:.0f} s")
            if time.monotonic() >= next_kill:
                the_stack.kill_worker(rng.randrange(2))
                next_kill = time.monotonic() + rng.uniform(10, 15)

    chaos = threading.Thread(target=driver, daemon=True)
    chaos.start()
    with (
        httpx.Client(base_url=the_stack.base_url, timeout=10) as client,
        ThreadPoolExecutor(16) as pool,
    ):
        accepted = list(pool.map(lambda i: post_with_retries(client, i, run), range(EVENTS)))
    assert all(accepted), f"{accepted.count(False)} events never accepted"
    ingest_seconds = time.monotonic() - started
    try:
        letters = settle(url, EVENTS, SETTLE_TIMEOUT)
    finally:
        done.set()
        chaos.join()
    lines = sink_lines(sink_log)
    accepted_at_sink = Counter(mid for outcome, mid in lines if outcome == "accepted")
    dropped = [mid for outcome, mid in lines if outcome == "dropped"]
    report = {
        "events": EVENTS,
        "accept_seconds": round(ingest_seconds, 1),
        "all_settled_seconds": round(time.monotonic() - started, 1),
        "worker_kills": the_stack.kills,
        "faults": faults,
        "letters": letters,
        "sink": dict(Counter(outcome for outcome, _ in lines)),
        "crm_posts": sum(crm.posts.values()),
        "crm_keys": len(crm.accepted),
    }
    print("\nchaos report:", json.dumps(report, indent=2))

    # Every accepted event became exactly one letter, and every letter is final.
    assert sum(letters.values()) == EVENTS
    # No Message-ID was accepted twice by the SMTP server.
    assert [mid for mid, n in accepted_at_sink.items() if n > 1] == []
    # A message dropped after DATA is `unknown` and was never offered again.
    engine = create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(select(Letter.id, Letter.message_id, Letter.status)).all()
    status_of = {mid: status for _, mid, status in rows}
    for mid in dropped:
        assert status_of[mid] == "unknown", mid
        # Offered once more after a 451 is fine (that try was refused); after the drop, never.
        seen = [outcome for outcome, m in lines if m == mid]
        assert seen[-1] == "dropped" and seen.count("dropped") == 1, f"{mid}: {seen}"
    # The CLI lists every failed and every unknown letter.
    failed = {m for m, s in status_of.items() if s == "failed"}
    assert listed(the_stack, "failed") == {i for i, _, s in rows if s == "failed"}
    assert listed(the_stack, "unknown") == {i for i, _, s in rows if s == "unknown"}
    # The stand-in CRM got every activity, once per idempotency key, with nothing malformed.
    assert crm.rejected == []
    with engine.connect() as conn:
        keys = set(conn.execute(select(CrmActivity.idempotency_key)).scalars())
    assert set(crm.accepted) == keys

    # A replay of the failed letters sends each once.
    if failed:
        subprocess.run(
            [sys.executable, "-m", "worker.cli", "letters", "replay", "--status", "failed",
             "--reason", "chaos run", "--yes"],
            env=the_stack.env, check=True, capture_output=True,
        )  # fmt: skip
        settle(url, EVENTS, 120)
        lines = sink_lines(sink_log)
        accepted_at_sink = Counter(mid for outcome, mid in lines if outcome == "accepted")
        assert all(accepted_at_sink[mid] <= 1 for mid in failed)
        with engine.connect() as conn:
            after = dict(
                conn.execute(
                    select(Letter.message_id, Letter.status).where(Letter.message_id.in_(failed))
                ).all()
            )
        sent_now = [mid for mid, status in after.items() if status == "sent"]
        assert all(accepted_at_sink[mid] == 1 for mid in sent_now)
        print(f"replayed {len(failed)} failed letters: {len(sent_now)} sent, each once")
    engine.dispose()
