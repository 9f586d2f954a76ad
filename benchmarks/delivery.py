"""How fast due letters go out, against a naive loop and the SMTP transport's ceiling.

Thankly: `thankly worker` (default pool and concurrency) and `thankly scheduler` as their
own processes, PostgreSQL and Redis on 127.0.0.1, and an SMTP sink in a third process
(`benchmarks/smtp_sink.py`). N letters, each with its own event, fall due a few seconds
after the processes started; the figure is N over the time from their due time until the
last one is `sent` in the database, seen from outside.

Baselines, in the same run against the same sink:
- naive loop: one process renders the same template with Jinja2, builds the message with
  the standard library and sends it over one reused smtplib connection; no database.
- transport ceiling: one prebuilt message sent N times over one connection.

    .venv/bin/python -m benchmarks.delivery [--database-url URL] [--letters N] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import jinja2
import redis
from sqlalchemy import func, insert, select, text

from benchmarks.tick_cost import throwaway_database
from benchmarks.worker_memory import tree
from worker.db import make_engine, make_session_factory
from worker.events import GenericEvent
from worker.migrate import upgrade
from worker.models import Letter

ROOT = Path(__file__).resolve().parent.parent
BROKER = "redis://127.0.0.1:6379/12"
PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
LEAD = 8.0  # seconds from the start of the processes to the letters' due time
MAIL_FROM = "Bench Shop <thanks@shop.example>"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def event_payload(i: int) -> dict[str, Any]:
    return GenericEvent.model_validate(
        {
            "type": "deal.closed",
            "timestamp": "2026-11-20T10:00:00Z",
            "data": {
                "contact": {
                    "id": f"c-{i}",
                    "email": f"customer{i}@example.org",
                    "first_name": "Anna",
                    "last_name": "Meyer",
                    "locale": "en",
                },
                "deal": {
                    "id": f"d-{i}",
                    "number": str(10_000 + i),
                    "title": "Annual plan",
                    "amount": "500.00",
                    "currency": "EUR",
                },
                "owner": {"name": "Jonas Weber", "email": "jonas@shop.example"},
            },
        }
    ).model_dump(mode="json")


def seed(url: str, letters: int, due_at: datetime) -> None:
    engine = make_engine(url)
    factory = make_session_factory(engine)
    created = due_at - timedelta(days=2)
    with factory.begin() as session:
        for start in range(0, letters, 2000):
            ids = range(start + 1, min(start + 2000, letters) + 1)
            session.execute(
                text(
                    "INSERT INTO inbox (id, source, event_id, received_at, body, body_sha256, "
                    "status, enqueue_count) VALUES (:id, 'bench', :e, :t, '{}', '', "
                    "'processed', 1)"
                ),
                [{"id": i, "e": f"e{i}", "t": created} for i in ids],
            )
            session.execute(
                text(
                    "INSERT INTO events (id, inbox_id, source, external_id, type, occurred_at, "
                    "payload, created_at) VALUES (:id, :id, 'bench', :e, 'deal.closed', :t, "
                    ":payload, :t)"
                ),
                [
                    {"id": i, "e": f"e{i}", "t": created, "payload": json.dumps(event_payload(i))}
                    for i in ids
                ],
            )
            session.execute(
                insert(Letter),
                [
                    {
                        "event_id": i,
                        "rule": "deal-closed-thanks",
                        "letter": "deal_closed",
                        "locale": "en",
                        "contact_email": f"customer{i}@example.org",
                        "status": "scheduled",
                        "due_at": due_at,
                        "message_id": f"<bench-{i}@shop.example>",
                        "attempt_count": 0,
                        "created_at": created,
                        "updated_at": created,
                    }
                    for i in ids
                ],
            )
        session.execute(text("ANALYZE"))
    engine.dispose()


def wait_all_sent(url: str, letters: int, due: float, timeout: float) -> float:
    """Seconds from the due time until every letter is sent (polled from outside)."""
    engine = make_engine(url)
    try:
        while True:
            with engine.connect() as conn:
                sent = conn.execute(
                    select(func.count()).select_from(Letter).where(Letter.status == "sent")
                ).scalar_one()
            if sent >= letters:
                return time.time() - due
            if time.time() - due > timeout:
                raise SystemExit(f"only {sent} of {letters} letters sent after {timeout:.0f} s")
            time.sleep(0.1)
    finally:
        engine.dispose()


def thankly(url: str, letters: int, port: int, tmp: Path, pool: str) -> dict[str, float]:
    redis.Redis.from_url(BROKER).flushdb()
    env = {k: v for k, v in os.environ.items() if not k.startswith("THANKLY_")}
    env |= {
        "THANKLY_BROKER_URL": BROKER,
        "THANKLY_DATABASE_URL": url,
        "THANKLY_VAR_DIR": str(tmp),
        "THANKLY_SECRET_KEY": "b" * 40,
        "THANKLY_MAIL_FROM": MAIL_FROM,
        "THANKLY_SMTP_URL": f"smtp://127.0.0.1:{port}",
        "THANKLY_LOG_LEVEL": "warning",
    }
    due = time.time() + LEAD
    seed(url, letters, datetime.fromtimestamp(due, UTC))
    cli = [sys.executable, "-m", "worker.cli"]
    procs = [
        subprocess.Popen([*cli, *cmd], env=env, cwd=ROOT, start_new_session=True,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for cmd in (["worker", "--pool", pool], ["scheduler"])
    ]  # fmt: skip
    try:
        from benchmarks.ingest import cpu_seconds  # here: ingest imports this module

        # CPU is counted from the due time: imports and start-up are not sending.
        time.sleep(max(0.0, due - time.time()))
        trees = [pid for proc in procs for pid in tree(proc.pid)]
        cpu_before = cpu_seconds(trees)
        seconds = wait_all_sent(url, letters, due, timeout=600)
        cpu = cpu_seconds(trees) - cpu_before
    finally:
        for proc in procs:
            os.killpg(proc.pid, 15)
        for proc in procs:
            proc.wait(timeout=30)
    return {
        "seconds": round(seconds, 2),
        "per_second": round(letters / seconds, 1),
        "cpu_ms_per_letter": round(1000 * cpu / letters, 2),
    }


def naive_loop(letters: int, port: int) -> dict[str, float]:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(ROOT / "templates"),
        autoescape=True,
        # What the naive loop does not provide (brand details, tracking) renders empty.
        undefined=jinja2.ChainableUndefined,
    )
    subject = env.get_template("deal_closed/en/subject.txt")
    body_text = env.get_template("deal_closed/en/body.txt")
    body_html = env.get_template("deal_closed/en/body.html")
    started, cpu = time.perf_counter(), time.process_time()
    with smtplib.SMTP("127.0.0.1", port) as conn:
        for i in range(letters):
            context = event_payload(i)["data"] | {
                "greeting": "Dear Anna Meyer,",
                "deal_title": "Annual plan",
                "amount": "€500.00",
                "event_date": "20 November 2026",
                "brand": {"name": "Bench Shop"},
                "unsubscribe_url": "https://shop.example/u/token",
            }
            message = EmailMessage()
            message["Subject"] = subject.render(context).strip()
            message["From"] = MAIL_FROM
            message["To"] = f"customer{i}@example.org"
            message["Message-ID"] = f"<naive-{i}@shop.example>"
            message.set_content(body_text.render(context))
            message.add_alternative(body_html.render(context), subtype="html")
            conn.send_message(message)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {
        "seconds": round(seconds, 2),
        "per_second": round(letters / seconds, 1),
        "cpu_ms_per_letter": round(1000 * cpu / letters, 2),
    }


def ceiling(letters: int, port: int) -> dict[str, float]:
    message = EmailMessage()
    message["Subject"], message["From"], message["To"] = "Thank you", MAIL_FROM, "a@example.org"
    message.set_content("Thank you.\n" * 40)
    data = message.as_bytes()
    started = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", port) as conn:
        for _ in range(letters):
            conn.sendmail("thanks@shop.example", ["a@example.org"], data)
    seconds = time.perf_counter() - started
    return {"seconds": round(seconds, 2), "per_second": round(letters / seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=os.environ.get("THANKLY_BENCH_PG_URL", PG))
    parser.add_argument("--letters", type=int, default=5_000)
    parser.add_argument("--pool", default="threads", help="the worker's Celery pool")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    port = free_port()
    sink = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.smtp_sink", "--port", str(port)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert sink.stdout is not None
        sink.stdout.readline()  # listening
        results = {
            "transport ceiling (one prebuilt message)": ceiling(args.letters, port),
            "naive loop (render, build, smtplib)": naive_loop(args.letters, port),
        }
        with (
            tempfile.TemporaryDirectory() as tmp,
            throwaway_database(args.database_url, Path(tmp)) as url,
        ):
            upgrade(url)
            results["thankly worker + scheduler"] = thankly(
                url, args.letters, port, Path(tmp), args.pool
            )
    finally:
        sink.terminate()
        sink.wait(timeout=10)
    naive = results["naive loop (render, build, smtplib)"]["per_second"]
    ours = results["thankly worker + scheduler"]["per_second"]
    report = {
        "letters": args.letters,
        "pool": args.pool,
        "results": results,
        "ratio_to_naive": round(ours / naive, 3),
    }
    if args.json:
        print(json.dumps(report))
        return
    print(
        f"delivery of {args.letters:,} due letters (PostgreSQL, Redis, SMTP sink process; "
        f"worker pool {args.pool}); CPU: the sending processes' own, per letter"
    )
    for name, row in results.items():
        cpu = f"{row['cpu_ms_per_letter']:6.2f} ms CPU" if "cpu_ms_per_letter" in row else " " * 13
        print(
            f"  {name:<42} {row['per_second']:8.1f} letters/s  ({row['seconds']:.1f} s)"
            f"  {cpu}  {row['per_second'] / naive:6.2f}x naive"
        )


if __name__ == "__main__":
    main()
