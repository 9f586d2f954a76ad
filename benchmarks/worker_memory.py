"""How much memory an idle worker's process tree holds, against a plain Celery worker.

Starts each worker with the same pool and concurrency, waits until its process tree has
settled, and sums RSS and PSS (proportional: shared pages split between the processes
that share them, the fairer figure for prefork children) over the tree from /proc. The
baseline is a Celery app with one task and nothing of Thankly imported
(`benchmarks/plain_celery.py`). Redis db 12 is used as the broker and left as it was.

    .venv/bin/python -m benchmarks.worker_memory [--concurrency N] [--json]
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

BROKER = "redis://127.0.0.1:6379/12"
SETTLE = 12.0  # seconds for a worker to import, fork its pool and go idle


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


def measure(command: list[str], env: dict[str, str]) -> dict[str, float]:
    proc = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    try:
        time.sleep(SETTLE)
        if proc.poll() is not None:
            raise SystemExit(f"{' '.join(command)} exited with {proc.returncode}")
        pids = tree(proc.pid)
        rss, pss = memory_mb(pids)
        return {"processes": len(pids), "rss_mb": round(rss, 1), "pss_mb": round(pss, 1)}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    n = str(args.concurrency)
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("THANKLY_")}
        env |= {
            "THANKLY_BROKER_URL": BROKER,
            "BENCH_BROKER_URL": BROKER,
            "THANKLY_DATABASE_URL": f"sqlite:///{tmp}/bench.db",
            "THANKLY_VAR_DIR": tmp,
            "THANKLY_SECRET_KEY": "b" * 40,
            "THANKLY_MAIL_FROM": "Bench <bench@example.org>",
            "THANKLY_SMTP_URL": "smtp://127.0.0.1:2525",
        }
        thankly = [sys.executable, "-m", "worker.cli", "worker", "--concurrency", n]
        plain = [sys.executable, "-m", "celery", "-A", "benchmarks.plain_celery", "worker",
                 "--concurrency", n, "--loglevel", "WARNING"]  # fmt: skip
        results = {
            "plain Celery, prefork": measure([*plain, "--pool", "prefork"], env),
            "thankly worker, prefork": measure([*thankly, "--pool", "prefork"], env),
            "plain Celery, threads": measure([*plain, "--pool", "threads"], env),
            "thankly worker, threads (default)": measure([*thankly, "--pool", "threads"], env),
        }
    if args.json:
        print(json.dumps({"concurrency": args.concurrency, "results": results}))
        return
    print(f"idle worker process trees, concurrency {args.concurrency}")
    for pool in ("prefork", "threads"):
        base = results[f"plain Celery, {pool}"]
        for name, row in results.items():
            if pool in name:
                print(
                    f"  {name:<36} {row['processes']:>2} processes  RSS {row['rss_mb']:7.1f} MB"
                    f"  PSS {row['pss_mb']:7.1f} MB  ({row['pss_mb'] / base['pss_mb']:.2f}x PSS)"
                )


if __name__ == "__main__":
    main()
