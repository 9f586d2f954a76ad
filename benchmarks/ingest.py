"""How fast signed webhooks are accepted durably, against a minimal handler and bare uvicorn.

Three servers, one after the other, each with the same number of uvicorn processes, on
PostgreSQL and Redis at 127.0.0.1; the load generator (`benchmarks/load.py`) runs in its
own process and sends the same 20,000 signed webhooks over 32 keep-alive connections:
- `thankly api --workers N`: the real route (signature, validation, inbox row, commit,
  202, then the publish to Redis);
- a minimal durable handler (`benchmarks/minimal_api.py:app`): HMAC check, JSON parse,
  one INSERT and COMMIT, 202;
- bare uvicorn (`benchmarks/minimal_api.py:bare`): 202 to anything, nothing stored.
Also the servers' CPU time per request, from /proc over their process tree.

    .venv/bin/python -m benchmarks.ingest [--database-url URL] [--events N]
        [--connections N] [--workers N] [--json]
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
from pathlib import Path
from typing import Any

import httpx
import redis
from sqlalchemy import create_engine, text

from benchmarks.delivery import BROKER, PG, free_port
from benchmarks.tick_cost import throwaway_database
from benchmarks.worker_memory import tree
from worker.migrate import upgrade

ROOT = Path(__file__).resolve().parent.parent
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except OSError:
            continue
    return total / TICKS


def serve(command: list[str], env: dict[str, str], port: int, events: int, conns: int) -> Any:
    server = subprocess.Popen(
        command, env=env, cwd=ROOT, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        for _ in range(200):
            try:
                httpx.get(f"http://127.0.0.1:{port}/", timeout=0.5)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        time.sleep(1.0)  # every worker process up
        before = cpu_seconds(tree(server.pid))
        load = subprocess.run(
            [sys.executable, "-m", "benchmarks.load", "--port", str(port), "--events",
             str(events), "--connections", str(conns), "--secret", SECRET],
            cwd=ROOT, capture_output=True, text=True, check=True,
        )  # fmt: skip
        result = json.loads(load.stdout)
        used = cpu_seconds(tree(server.pid)) - before
        result["cpu_ms_per_request"] = round(used * 1000 / max(result["requests"], 1), 2)
        return result
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=os.environ.get("THANKLY_BENCH_PG_URL", PG))
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    workers = str(args.workers)
    results: dict[str, Any] = {}
    with (
        tempfile.TemporaryDirectory() as tmp,
        throwaway_database(args.database_url, Path(tmp)) as url,
    ):
        upgrade(url)
        engine = create_engine(url)
        with engine.begin() as conn:
            conn.execute(
                text("CREATE TABLE bench_inbox (id bigserial PRIMARY KEY, "
                     "event_id text UNIQUE NOT NULL, body text NOT NULL)")
            )  # fmt: skip
        redis.Redis.from_url(BROKER).flushdb()
        env = {k: v for k, v in os.environ.items() if not k.startswith("THANKLY_")}
        env |= {
            "THANKLY_DATABASE_URL": url,
            "THANKLY_BROKER_URL": BROKER,
            "THANKLY_WEBHOOK_SECRETS": SECRET,
            "THANKLY_SECRET_KEY": "b" * 40,
            "THANKLY_MAIL_FROM": "Bench Shop <thanks@shop.example>",
            "THANKLY_VAR_DIR": tmp,
            "THANKLY_LOG_LEVEL": "warning",
            "BENCH_DATABASE_URL": url,
            "BENCH_SECRET": SECRET,
        }
        uvicorn = [sys.executable, "-m", "benchmarks.serve_app", "--workers", workers]
        port = free_port()
        results["bare uvicorn (202, nothing stored)"] = serve(
            [*uvicorn, "--port", str(port), "benchmarks.minimal_api:bare"],
            env, port, args.events, args.connections,
        )  # fmt: skip
        port = free_port()
        results["minimal durable handler"] = serve(
            [*uvicorn, "--port", str(port), "benchmarks.minimal_api:app"],
            env, port, args.events, args.connections,
        )  # fmt: skip
        port = free_port()
        results["thankly api"] = serve(
            [sys.executable, "-m", "worker.cli", "api", "--port", str(port), "--workers",
             workers],
            env, port, args.events, args.connections,
        )  # fmt: skip
        with engine.connect() as conn:
            stored = conn.execute(text("SELECT count(*) FROM inbox")).scalar_one()
        engine.dispose()
    minimal = results["minimal durable handler"]["per_second"]
    report = {
        "events": args.events,
        "connections": args.connections,
        "server_processes": args.workers,
        "thankly_rows_stored": stored,
        "results": results,
        "ratio_to_minimal": round(results["thankly api"]["per_second"] / minimal, 2),
    }
    if args.json:
        print(json.dumps(report))
        return
    print(
        f"ingest of {args.events:,} signed webhooks over {args.connections} connections, "
        f"{args.workers} server process(es) each (PostgreSQL, Redis)"
    )
    for name, row in results.items():
        print(
            f"  {name:<36} {row['per_second']:8.1f}/s  p50 {row['p50_ms']:7.2f} ms  "
            f"p99 {row['p99_ms']:7.2f} ms  CPU {row['cpu_ms_per_request']:5.2f} ms/request  "
            f"{row['per_second'] / minimal:5.2f}x minimal  answers {row['statuses']}"
        )
    print(f"  thankly stored {stored:,} inbox rows")


if __name__ == "__main__":
    main()
