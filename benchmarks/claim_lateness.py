"""How late 5,000 letters that fall due at once are handed to the workers.

The scheduler loop used to rest the full interval after every tick, so a tick's batch of
200 set the pace: 5,000 letters took 25 intervals (250 s at the default 10 s). It now
ticks again at once after a full batch. This runs the same `tick` both ways in one run,
behind a backlog of letters due next year: the baseline rests the interval after every
tick (the previous loop), the measured one is `worker.scheduling.tick.run_forever`.
Lateness is the wall time from the start to each letter's enqueue.

    .venv/bin/python -m benchmarks.claim_lateness [--database-url URL] [--due N]
        [--pending N] [--interval SECONDS] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.tick_cost import NOW, seed, throwaway_database
from worker.clock import FixedClock
from worker.migrate import upgrade
from worker.queue import SEND_LETTER
from worker.runtime import Runtime, build_runtime
from worker.scheduling import tick
from worker.settings import Settings


class TimedDispatcher:
    """Notes when each letter was enqueued, and says when the last one was."""

    def __init__(self, expected: int) -> None:
        self.expected, self.started = expected, time.perf_counter()
        self.at: list[float] = []
        self.done = threading.Event()

    def send(self, task: str, *ids: int) -> None:
        if task == SEND_LETTER:  # a task names several letters: each was enqueued now
            self.at.extend([time.perf_counter() - self.started] * len(ids))
            if len(self.at) >= self.expected:
                self.done.set()

    def send_many(self, task: str, groups: Sequence[Sequence[int]]) -> None:
        for group in groups:
            self.send(task, *group)


class UntilDone(threading.Event):
    """run_forever's stop event: stops once every letter was enqueued."""

    def __init__(self, dispatcher: TimedDispatcher) -> None:
        super().__init__()
        self.dispatcher = dispatcher

    def wait(self, timeout: float | None = None) -> bool:
        return self.dispatcher.done.wait(timeout)


def runtime_for(url: str, var: Path, interval: float, dispatcher: TimedDispatcher) -> Runtime:
    settings = Settings(
        database_url=url, var_dir=var, sweep_interval_seconds=interval, crm_reconcile_minutes=0
    )
    return build_runtime(settings, clock=FixedClock(NOW), dispatcher=dispatcher)


def resting_loop(runtime: Runtime, dispatcher: TimedDispatcher, interval: float) -> None:
    """The previous loop: tick, then rest the whole interval, whatever the tick found."""
    while not dispatcher.done.is_set():
        tick.tick(runtime)
        dispatcher.done.wait(interval)


def measure(url: str, var: Path, due: int, interval: float, draining: bool) -> dict[str, Any]:
    dispatcher = TimedDispatcher(due)
    runtime = runtime_for(url, var, interval, dispatcher)
    dispatcher.started = time.perf_counter()
    if draining:
        tick.run_forever(runtime, UntilDone(dispatcher))
    else:
        resting_loop(runtime, dispatcher, interval)
    runtime.engine.dispose()
    at = sorted(dispatcher.at)
    return {
        "letters": len(at),
        "all_claimed_s": round(at[-1], 3),
        "p50_s": round(statistics.median(at), 3),
        "p99_s": round(at[int(len(at) * 0.99) - 1], 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", help="a PostgreSQL server (default: SQLite)")
    parser.add_argument("--due", type=int, default=5_000)
    parser.add_argument("--pending", type=int, default=100_000)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = {}
    with (
        tempfile.TemporaryDirectory() as tmp,
        throwaway_database(args.database_url, Path(tmp)) as url,
    ):
        upgrade(url)
        from worker.db import make_engine, make_session_factory

        engine = make_engine(url)
        factory = make_session_factory(engine)
        for name, draining in (("baseline: rest after every tick", False), ("thankly", True)):
            seed(factory, args.pending, args.due)
            results[name] = measure(url, Path(tmp), args.due, args.interval, draining)
        dialect = engine.dialect.name
        engine.dispose()
    base, ours = results["baseline: rest after every tick"], results["thankly"]
    report = {
        "database": dialect,
        "due": args.due,
        "pending": args.pending,
        "interval_s": args.interval,
        "results": results,
        "ratio_all_claimed": round(base["all_claimed_s"] / max(ours["all_claimed_s"], 1e-9), 1),
    }
    if args.json:
        print(json.dumps(report))
        return
    print(
        f"{args.due:,} letters due at once behind {args.pending:,} pending "
        f"({dialect}, interval {args.interval:g} s)"
    )
    for name, row in results.items():
        print(
            f"  {name:<32} all claimed {row['all_claimed_s']:8.2f} s   "
            f"p50 {row['p50_s']:7.2f} s   p99 {row['p99_s']:7.2f} s"
        )
    print(f"  the baseline takes {report['ratio_all_claimed']}x as long to claim them all")


if __name__ == "__main__":
    main()
