"""What a scheduler tick costs when nothing is due, against as many empty transactions.

Most ticks find nothing: the scheduler wakes every interval to sweep for lost messages
and due letters. Such a tick should cost its round trips, not the backlog it looks past.
This runs `worker.scheduling.tick.tick` with nothing due behind a small backlog of
letters due next year and behind one 100 times larger, and, alternating with it in the
same run, the baseline: the same number of transactions as the tick made (counted on the
engine), each one `SELECT 1` through the same session factory and connection pool.

    .venv/bin/python -m benchmarks.empty_tick [--database-url URL] [--pending N] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.orm import Session, sessionmaker

from benchmarks.tick_cost import NOW, seed, throwaway_database
from worker.clock import FixedClock
from worker.migrate import upgrade
from worker.queue import RecordingDispatcher
from worker.runtime import Runtime, build_runtime
from worker.scheduling.tick import TickReport, tick
from worker.settings import Settings

SELECT_ONE = text("SELECT 1")


class Counter:
    """Transactions begun and statements sent on one engine, for the baseline's size."""

    def __init__(self) -> None:
        self.transactions = self.statements = 0

    def count(self, runtime: Runtime) -> TickReport:
        """One tick, counted (and warming the pool and the statement cache); the listeners
        are removed again so that they weigh on neither timing."""
        event.listen(runtime.engine, "begin", self._begin)
        event.listen(runtime.engine, "before_cursor_execute", self._statement)
        try:
            return tick(runtime)
        finally:
            event.remove(runtime.engine, "begin", self._begin)
            event.remove(runtime.engine, "before_cursor_execute", self._statement)

    def _begin(self, *_: Any) -> None:
        self.transactions += 1

    def _statement(self, *_: Any) -> None:
        self.statements += 1


def empty_transactions(factory: sessionmaker[Session], count: int) -> None:
    for _ in range(count):
        with factory.begin() as session:
            session.execute(SELECT_ONE)


def timed(call: Any) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def measure(runtime: Runtime, repeats: int) -> dict[str, Any]:
    counter = Counter()
    report = counter.count(runtime)
    if report != TickReport(inbox_requeued=0):
        raise SystemExit(f"the tick found work: {report}")
    count = counter.transactions
    factory = runtime.session_factory
    empty_transactions(factory, count)
    ticks, baselines = [], []
    for _ in range(repeats):  # alternated, so that drift on the machine hits both alike
        ticks.append(timed(lambda: tick(runtime)))
        baselines.append(timed(lambda: empty_transactions(factory, count)))
    ours, base = statistics.median(ticks), statistics.median(baselines)
    return {
        "transactions": count,
        "statements": counter.statements,
        "tick_ms": round(ours * 1000, 3),
        "empty_transactions_ms": round(base * 1000, 3),
        "ratio": round(ours / base, 2),
    }


def run(url: str, var: Path, backlogs: tuple[int, int], repeats: int) -> dict[str, Any]:
    upgrade(url)
    settings = Settings(database_url=url, var_dir=var)  # default settings otherwise
    runtime = build_runtime(settings, clock=FixedClock(NOW), dispatcher=RecordingDispatcher())
    sqlite = runtime.engine.dialect.name == "sqlite"
    rows = []
    for pending in backlogs:
        seed(runtime.session_factory, pending, due=0, analyze=False)
        rows.append({"pending": pending, "analyzed": not sqlite} | measure(runtime, repeats))
    if sqlite:
        # SQLite as an operator's ANALYZE (or PRAGMA optimize) leaves it: the planner then
        # knows that `status` has one value in this backlog, and may pick other plans.
        with runtime.session_factory.begin() as session:
            session.execute(text("ANALYZE"))
        runtime.engine.dispose()  # new connections read the new statistics
        rows.append({"pending": backlogs[1], "analyzed": True} | measure(runtime, repeats))
    runtime.engine.dispose()
    growth = rows[1]["tick_ms"] / rows[0]["tick_ms"]
    return {"database": runtime.engine.dialect.name, "results": rows, "growth": round(growth, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", help="a PostgreSQL server (default: SQLite)")
    parser.add_argument("--pending", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=300)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    backlogs = (max(args.pending // 100, 1), args.pending)
    with (
        tempfile.TemporaryDirectory() as tmp,
        throwaway_database(args.database_url, Path(tmp)) as url,
    ):
        report = run(url, Path(tmp), backlogs, args.repeats)
    if args.json:
        print(json.dumps(report))
        return
    print(f"empty tick vs as many empty transactions ({report['database']}, medians)")
    print("  pending  statistics  transactions  statements  empty tick  empty transactions  ratio")
    for row in report["results"]:
        print(
            f"  {row['pending']:>7,}  {'ANALYZEd' if row['analyzed'] else 'none':>10}"
            f"  {row['transactions']:>12}  {row['statements']:>10}"
            f"  {row['tick_ms']:>7.2f} ms  {row['empty_transactions_ms']:>15.2f} ms"
            f"  {row['ratio']:>4.2f}x"
        )
    print(
        f"  empty tick at {backlogs[1]:,} pending / at {backlogs[0]:,} (first two rows): "
        f"{report['growth']}x"
    )


if __name__ == "__main__":
    main()
