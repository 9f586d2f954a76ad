"""How the scheduler tick's cost grows with the backlog of letters still waiting.

"The database is the clock" (docs/architecture.md) keeps every 24-72 h wait in the
database, so the tick's claim query must cost what the *due* letters cost, not what the
whole backlog costs. This measures
`claim_due_letters` for the same 50 due letters behind a small backlog (the baseline)
and behind a backlog 100 times larger, in one run, and reports the ratio (~1 is the goal;
a full scan would make it ~100).

    .venv/bin/python -m benchmarks.tick_cost [--database-url URL] [--backlog N] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import TextClause, bindparam, create_engine, text, update
from sqlalchemy.orm import Session, sessionmaker

from worker.db import UTCDateTime, make_engine, make_session_factory
from worker.migrate import upgrade
from worker.models import Letter
from worker.scheduling.claims import claim_due_letters

NOW = datetime(2026, 12, 1, tzinfo=UTC)
DUE_AT = datetime(2026, 11, 30, tzinfo=UTC)
LATER = datetime(2027, 6, 1, tzinfo=UTC)
DUE = 50


@contextmanager
def throwaway_database(url: str | None, tmp: Path) -> Iterator[str]:
    """SQLite in a temporary folder, or a new PostgreSQL database next to `url` (dropped
    afterwards), so a benchmark never touches data it did not create."""
    if url is None:
        yield f"sqlite:///{tmp / 'bench.db'}"
        return
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    name = f"thankly_bench_{os.getpid()}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield url.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def seed(
    factory: sessionmaker[Session],
    pending: int,
    due: int = DUE,
    *,
    analyze: bool = True,
    later: datetime = LATER,
) -> None:
    """`due` letters due now behind `pending` letters due next year.

    One set-based INSERT … SELECT over a generated series: a million rows built in Python
    and sent through the ORM took minutes and a gigabyte of the benchmark's own memory.
    PostgreSQL's autovacuum would gather statistics on its own, so they are gathered here
    at once; SQLite has none until someone runs ANALYZE (Thankly does not), hence the
    choice on SQLite."""
    created = datetime(2026, 11, 20, tzinfo=UTC)
    with factory.begin() as session:
        for table in ("letters", "events", "inbox"):
            session.execute(text(f"DELETE FROM {table}"))
        session.execute(
            text(
                "INSERT INTO inbox (id, source, event_id, received_at, body, body_sha256, status, "
                "enqueue_count) VALUES (1, 'bench', 'e', :t, '{}', '', 'processed', 1)"
            ).bindparams(bindparam("t", type_=UTCDateTime())),
            {"t": created},
        )
        session.execute(
            text(
                "INSERT INTO events (id, inbox_id, source, external_id, type, occurred_at, "
                "payload, created_at) "
                "VALUES (1, 1, 'bench', 'e', 'deal.closed', :t, '{}', :t)"
            ).bindparams(bindparam("t", type_=UTCDateTime())),
            {"t": created},
        )
        postgres = session.get_bind().dialect.name == "postgresql"
        session.execute(letters_insert(postgres), {
            "last": pending + due - 1, "due": due, "due_at": DUE_AT, "later": later,
            "t": created,
        })  # fmt: skip
        if postgres or analyze:
            session.execute(text("ANALYZE letters" if postgres else "ANALYZE"))


def letters_insert(postgres: bool) -> TextClause:
    """Letters numbered 0..:last for event 1, all `scheduled`: those below :due are due at
    :due_at, the rest (the backlog) at :later. The datetimes are bound through the column's
    type, so each backend stores them as the ORM would."""
    numbers = (
        "SELECT generate_series(0, CAST(:last AS INTEGER)) AS i"
        if postgres  # SQLite has no generate_series without an extension
        else "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < :last) "
        "SELECT i FROM n"
    )
    return text(
        "INSERT INTO letters (event_id, rule, letter, locale, contact_email, status, due_at, "
        "message_id, attempt_count, created_at, updated_at) "
        "SELECT 1, 'r' || i, 'deal_closed', 'en', 'c' || i || '@example.org', 'scheduled', "
        "CASE WHEN i < :due THEN :due_at ELSE :later END, '<' || i || '@bench>', 0, :t, :t "
        f"FROM ({numbers}) AS numbers"
    ).bindparams(*(bindparam(name, type_=UTCDateTime()) for name in ("due_at", "later", "t")))


def time_claims(factory: sessionmaker[Session], repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        claimed = claim_due_letters(factory, NOW, limit=200)
        samples.append(time.perf_counter() - started)
        assert len(claimed) == DUE, claimed
        with factory.begin() as session:  # put them back for the next round (not timed)
            session.execute(update(Letter).where(Letter.id.in_(claimed)).values(status="scheduled"))
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--database-url",
        help="a PostgreSQL server to create a throwaway database on; default: SQLite",
    )
    parser.add_argument("--backlog", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as tmp,
        throwaway_database(args.database_url, Path(tmp)) as url,
    ):
        upgrade(url)
        engine = make_engine(url)
        factory = make_session_factory(engine)
        baseline_backlog = max(args.backlog // 100, 1)
        results = {}
        for backlog in (baseline_backlog, args.backlog):
            seed(factory, backlog)
            results[backlog] = time_claims(factory, args.repeats)
        engine.dispose()
    base = results[baseline_backlog]
    ratio = results[args.backlog] / base
    if args.json:
        medians = {str(n): round(s * 1000, 3) for n, s in results.items()}
        print(json.dumps({"database": engine.dialect.name, "due": DUE, "median_ms": medians,
                          "ratio": round(ratio, 2)}))  # fmt: skip
        return
    print(f"database: {engine.dialect.name}; {DUE} due letters claimed per tick")
    for backlog, seconds in results.items():
        print(
            f"  backlog {backlog:>7,} pending: median {seconds * 1000:7.2f} ms "
            f"({seconds / base:.2f}x baseline)"
        )
    print(f"ratio for a {args.backlog // baseline_backlog}x larger backlog: {ratio:.2f}")


if __name__ == "__main__":
    main()
