"""How much memory a worker's process tree holds, idle and beside a backlog, against a
plain Celery worker.

Idle: each worker with the same pool and concurrency, once its tree has settled. Beside a
backlog: `thankly worker` while its database holds 1,000,000 letters due next year and
`thankly scheduler` ticks against it; Thankly keeps a letter's wait in the database, so
the worker should not grow. The baseline for that is what a Celery deployment that waits
with countdowns does: the plain worker after 20,000 tasks with a 48-hour countdown were
sent to it, which it reserves and holds in memory until they are due. RSS and PSS
(shared pages split between the processes that share them, the fairer figure for prefork
children) are summed over the tree from /proc. The plain app has one task and nothing of
Thankly imported (`benchmarks/plain_celery.py`). The broker is Redis db 12, the
benchmarks' own, emptied before and after as the other benchmarks do.

    .venv/bin/python -m benchmarks.worker_memory [--database-url URL] [--concurrency N]
        [--pending N] [--eta-tasks N] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import redis

from benchmarks.tick_cost import seed, throwaway_database
from worker.db import make_engine, make_session_factory
from worker.healthcheck import HEARTBEAT_FILE
from worker.migrate import upgrade

BROKER = "redis://127.0.0.1:6379/12"
POOLS = ("prefork", "threads")
SETTLE = 12.0  # seconds for a worker to import, fork its pool and go idle
COUNTDOWN = 48 * 3600
RESERVE_TIMEOUT = 180.0  # for the plain worker to take every countdown task off the queue


# --- measuring a process tree --------------------------------------------------------------


def tree(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        children = Path(f"/proc/{current}/task/{current}/children")
        if children.exists():
            todo += [int(c) for c in children.read_text().split()]
    return found


def memory_mb(pids: list[int]) -> tuple[float, float]:
    rss = pss = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                name, _, rest = line.partition(":")
                if name in ("Rss", "Pss"):
                    kb = int(rest.split()[0])
                    rss += kb if name == "Rss" else 0
                    pss += kb if name == "Pss" else 0
        except OSError:
            continue
    return rss / 1024, pss / 1024


def snapshot(proc: subprocess.Popen[bytes]) -> dict[str, Any]:
    if proc.poll() is not None:
        raise SystemExit(f"{proc.args!r} exited with {proc.returncode}")
    pids = tree(proc.pid)
    rss, pss = memory_mb(pids)
    return {"processes": len(pids), "rss_mb": round(rss, 1), "pss_mb": round(pss, 1)}


@contextmanager
def running(command: list[str], env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    """The command in its own process group, which is stopped (then killed) on the way out."""
    proc = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    try:
        yield proc
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@contextmanager
def emptied(url: str) -> Iterator[redis.Redis]:
    """The benchmarks' broker database, empty on the way in and out (as benchmarks.delivery
    and benchmarks.ingest leave it): a message left by another run would be consumed by
    the worker measured here, and a held countdown task, put back on the queue when its
    worker stops, must not reach the next one."""
    client = redis.Redis.from_url(url)
    client.flushdb()
    try:
        yield client
    finally:
        client.flushdb()
        client.close()


# --- the three situations ------------------------------------------------------------------


def idle(command: list[str], env: dict[str, str]) -> dict[str, Any]:
    with running(command, env) as proc:
        time.sleep(SETTLE)
        return snapshot(proc)


def holding_eta_tasks(command: list[str], env: dict[str, str], count: int) -> dict[str, Any]:
    """The plain worker after `count` tasks with a 48-hour countdown were sent to it, once
    it has taken them all off the queue (a worker reserves ETA tasks whatever its prefetch
    limit) and says it holds them as scheduled."""
    from benchmarks.plain_celery import app, noop

    app.conf.broker_url = BROKER
    with emptied(BROKER) as client, running(command, env) as proc:
        deadline = time.monotonic() + 60
        while not app.control.ping(timeout=1.0):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the plain Celery worker did not answer a ping")
        with app.producer_or_acquire() as producer:
            for item in range(count):
                noop.apply_async((item,), countdown=COUNTDOWN, producer=producer)
        deadline = time.monotonic() + RESERVE_TIMEOUT
        while client.llen("celery"):
            if time.monotonic() > deadline:
                raise SystemExit(f"{client.llen('celery')} countdown tasks still queued")
            time.sleep(0.5)
        replies = app.control.inspect(timeout=10.0).scheduled() or {}
        held = sum(len(tasks) for tasks in replies.values())
        if held != count:
            raise SystemExit(f"the plain worker holds {held} of {count} countdown tasks")
        time.sleep(2.0)  # let the consumer's buffers settle after the burst
        return snapshot(proc) | {"eta_tasks_held": held}


def beside_backlog(
    worker: list[str], scheduler: list[str], env: dict[str, str], var: Path
) -> dict[str, Any]:
    """`thankly worker` with `thankly scheduler` ticking against the same database."""
    heartbeat = var / HEARTBEAT_FILE
    heartbeat.unlink(missing_ok=True)
    with running(scheduler, env) as ticker, running(worker, env) as proc:
        time.sleep(SETTLE)
        if not heartbeat.exists():
            raise SystemExit("the scheduler did not complete a tick while the worker settled")
        row = snapshot(proc)
        row["scheduler_rss_mb"] = snapshot(ticker)["rss_mb"]
        return row


# --- the run -------------------------------------------------------------------------------


def thankly_env(tmp: str, database_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("THANKLY_")}
    return env | {
        "THANKLY_BROKER_URL": BROKER,
        "BENCH_BROKER_URL": BROKER,
        "THANKLY_DATABASE_URL": database_url,
        "THANKLY_VAR_DIR": tmp,
        "THANKLY_SECRET_KEY": "b" * 40,
        "THANKLY_MAIL_FROM": "Bench <bench@example.org>",
        "THANKLY_SMTP_URL": "smtp://127.0.0.1:2525",
    }


def commands(concurrency: int, pool: str) -> tuple[list[str], list[str]]:
    """(thankly worker, plain Celery worker) with this pool."""
    n = str(concurrency)
    thankly = [sys.executable, "-m", "worker.cli", "worker", "--concurrency", n, "--pool", pool]
    plain = [sys.executable, "-m", "celery", "-A", "benchmarks.plain_celery", "worker",
             "--concurrency", n, "--pool", pool, "--loglevel", "WARNING"]  # fmt: skip
    return thankly, plain


def seed_backlog(url: str, pending: int) -> None:
    """`pending` letters due a year from now, by the wall clock the scheduler reads."""
    engine = make_engine(url)
    seed(make_session_factory(engine), pending, 0, later=datetime.now(UTC) + timedelta(365))
    engine.dispose()


def run(args: argparse.Namespace, tmp: str, url: str) -> dict[str, dict[str, Any]]:
    upgrade(url)
    env = thankly_env(tmp, url)
    scheduler = [sys.executable, "-m", "worker.cli", "scheduler"]
    rows = {}
    with emptied(BROKER):
        for pool in POOLS:
            thankly, plain = commands(args.concurrency, pool)
            rows[f"plain Celery, {pool}, idle"] = idle(plain, env)
            rows[f"thankly worker, {pool}, idle"] = idle(thankly, env)
            rows[f"plain Celery, {pool}, ETA tasks"] = holding_eta_tasks(plain, env, args.eta_tasks)
        seed_backlog(url, args.pending)
        for pool in POOLS:
            thankly, _ = commands(args.concurrency, pool)
            rows[f"thankly worker, {pool}, pending"] = beside_backlog(
                thankly, scheduler, env, Path(tmp)
            )
    return rows


def print_tables(report: dict[str, Any]) -> None:
    rows, eta, pending = report["results"], report["eta_tasks"], report["pending"]

    def line(label: str, row: dict[str, Any], base: dict[str, Any]) -> None:
        print(
            f"  {label:<48} {row['processes']:>2} processes  RSS {row['rss_mb']:7.1f} MB"
            f"  PSS {row['pss_mb']:7.1f} MB  ({row['pss_mb'] / base['pss_mb']:.2f}x PSS)"
        )

    print(f"idle worker process trees, concurrency {report['concurrency']} ({report['database']})")
    for pool in POOLS:
        base = rows[f"plain Celery, {pool}, idle"]
        line(f"plain Celery, {pool}", base, base)
        line(f"thankly worker --pool {pool}", rows[f"thankly worker, {pool}, idle"], base)
    print(f"beside a backlog: {pending:,} pending letters vs {eta:,} countdown tasks")
    for pool in POOLS:
        base, ours = (
            rows[f"plain Celery, {pool}, ETA tasks"],
            rows[f"thankly worker, {pool}, pending"],
        )
        line(f"plain Celery, {pool}, holding {eta:,} ETA tasks", base, base)
        line(f"thankly worker --pool {pool}, {pending:,} pending", ours, base)
    for pool in POOLS:
        idle_row, ours = (
            rows[f"thankly worker, {pool}, idle"],
            rows[f"thankly worker, {pool}, pending"],
        )
        print(
            f"  thankly worker --pool {pool}: RSS beside the backlog / idle "
            f"{ours['rss_mb'] / idle_row['rss_mb']:.2f}x (scheduler beside it: "
            f"{ours['scheduler_rss_mb']:.1f} MB RSS)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", help="a PostgreSQL server (default: SQLite)")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--pending", type=int, default=1_000_000)
    parser.add_argument("--eta-tasks", type=int, default=20_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as tmp,
        throwaway_database(args.database_url, Path(tmp)) as url,
    ):
        rows = run(args, tmp, url)
    report = {
        "database": "postgresql" if args.database_url else "sqlite",
        "concurrency": args.concurrency,
        "pending": args.pending,
        "eta_tasks": args.eta_tasks,
        "results": rows,
    }
    if args.json:
        print(json.dumps(report))
        return
    print_tables(report)


if __name__ == "__main__":
    main()
