"""How long an experiment's report takes over a million letters, against one scan of them.

`thankly experiments report` counts, per arm, letters planned, sent, held out, opened,
clicked, unsubscribed and converted (a later deal of the same contact within the window,
looked up in the events table). Each measure is one grouped query that the database runs
as a semi-join. This seeds an experiment of `--letters` letters (10% holdout, two
variants, about 11% of contacts closing a later deal) and times, alternating in one run:

- the baseline: one grouped count of the experiment's letters by arm (a single scan, the
  least any report over them can cost);
- the report: `worker.experiments.report.report`, everything the command prints.

    .venv/bin/python -m benchmarks.experiment_report [--database-url URL] [--letters N] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, func, select, text
from sqlalchemy.orm import Session, sessionmaker

from benchmarks.tick_cost import throwaway_database
from worker.db import UTCDateTime, make_engine, make_session_factory
from worker.experiments.report import report
from worker.letters.catalogue import Catalogue
from worker.migrate import upgrade
from worker.models import Letter
from worker.planning.rules import parse_rules

NAME = "deal-thanks-q1"
START = datetime(2026, 6, 1, tzinfo=UTC)
NOW = datetime(2026, 12, 1, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[1]
RULES = f"""\
rules:
  - name: deal-closed-thanks
    on: deal.closed
    letter: deal_closed
    delay: 24h
    experiment:
      name: {NAME}
      variants: {{a: deal_closed, b: {{letter: deal_closed, variant: short}}}}
      holdout: 10%
"""


def _numbers(postgres: bool, last: str) -> str:
    if postgres:
        return f"SELECT generate_series(0, CAST({last} AS INTEGER)) AS i"
    # SQLite has no generate_series without an extension.
    return (
        f"WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < {last}) "
        "SELECT i FROM n"
    )


def _hours_after(postgres: bool, hours: str) -> str:
    """:start plus `hours` (an SQL expression), stored as the ORM stores times."""
    if postgres:
        return f"(:start + make_interval(hours => {hours}))"
    return f"strftime('%Y-%m-%d %H:%M:%f000', :start, '+' || ({hours}) || ' hours')"


def seed(factory: sessionmaker[Session], letters: int) -> int:
    """`letters` letters of the experiment (arm by number: every tenth held out, the rest
    a and b in turn), planned over 100 hours; the contacts whose number hashes below the
    arm's rate (10%, 11%, 12%) close a second deal ten days after their letter. Returns
    the number of conversions made."""
    with factory.begin() as session:
        postgres = session.get_bind().dialect.name == "postgresql"
        start = bindparam("start", type_=UTCDateTime())
        arm = "CASE WHEN i % 10 = 0 THEN 'holdout' WHEN i % 2 = 1 THEN 'a' ELSE 'b' END"
        rate = "CASE WHEN i % 10 = 0 THEN 100 WHEN i % 2 = 1 THEN 110 ELSE 120 END"
        converts = f"(CAST(i AS BIGINT) * 7919) % 1000 < {rate}"
        planned = _hours_after(postgres, "i % 100")
        session.execute(
            text(
                "INSERT INTO inbox (id, source, event_id, received_at, body, body_sha256, "
                "status, enqueue_count) VALUES (1, 'bench', 'e', :start, '{}', '', 'processed', 1)"
            ).bindparams(start),
            {"start": START},
        )
        session.execute(
            text(
                "INSERT INTO events (id, inbox_id, source, external_id, type, occurred_at, "
                "payload, created_at) VALUES (1, 1, 'bench', 'e', 'deal.closed', :start, '{}', "
                ":start)"
            ).bindparams(start),
            {"start": START},
        )
        session.execute(
            text(
                "INSERT INTO letters (event_id, rule, letter, locale, contact_email, deal_id, "
                "status, due_at, planned_at, message_id, attempt_count, created_at, updated_at, "
                "experiment, arm) "
                f"SELECT 1, 'r' || i, 'deal_closed', 'en', 'c' || i || '@example.org', 'd' || i, "
                f"CASE WHEN i % 10 = 0 THEN 'held_out' ELSE 'sent' END, {planned}, {planned}, "
                f"'<' || i || '@bench>', 1, :start, :start, '{NAME}', {arm} "
                f"FROM ({_numbers(postgres, ':last')}) AS numbers"
            ).bindparams(start),
            {"last": letters - 1, "start": START},
        )
        later = _hours_after(postgres, "i % 100 + 240")
        session.execute(
            text(
                "INSERT INTO inbox (id, source, event_id, received_at, body, body_sha256, "
                "status, enqueue_count) "
                f"SELECT i + 2, 'bench', 'e' || i, :start, '{{}}', '', 'processed', 1 "
                f"FROM ({_numbers(postgres, ':last')}) AS numbers WHERE {converts}"
            ).bindparams(start),
            {"last": letters - 1, "start": START},
        )
        session.execute(
            text(
                "INSERT INTO events (id, inbox_id, source, external_id, type, occurred_at, "
                "contact_email, deal_id, payload, created_at) "
                f"SELECT i + 2, i + 2, 'bench', 'e' || i, 'deal.closed', {later}, "
                f"'c' || i || '@example.org', 'repeat' || i, '{{}}', :start "
                f"FROM ({_numbers(postgres, ':last')}) AS numbers WHERE {converts}"
            ).bindparams(start),
            {"last": letters - 1, "start": START},
        )
        session.execute(text("ANALYZE"))
        made = session.scalar(text("SELECT count(*) FROM events")) or 0
    return int(made) - 1


def baseline(factory: sessionmaker[Session]) -> dict[str, int]:
    with factory() as session:
        query = select(Letter.arm, func.count()).where(Letter.experiment == NAME)
        return {str(arm): n for arm, n in session.execute(query.group_by(Letter.arm))}


def timed(call: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    result = call()
    return time.perf_counter() - started, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--database-url",
        help="a PostgreSQL server to create a throwaway database on; default: SQLite",
    )
    parser.add_argument("--letters", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rules = parse_rules(RULES, Path("rules.yaml"), Catalogue.scan(ROOT / "templates"))
    with (
        tempfile.TemporaryDirectory() as tmp,
        throwaway_database(args.database_url, Path(tmp)) as url,
    ):
        upgrade(url)
        engine = make_engine(url)
        factory = make_session_factory(engine)
        seeding, conversions = timed(lambda: seed(factory, args.letters))
        scans, reports = [], []
        result: dict[str, Any] = {}
        for _ in range(args.repeats):
            scans.append(timed(lambda: baseline(factory))[0])
            took, result = timed(lambda: report(factory, rules, NAME, NOW))
            reports.append(took)
        engine.dispose()
    counted = sum(a["converted"] for a in result["arms"])
    if counted != conversions:
        raise SystemExit(f"the report counted {counted} conversions, the seed made {conversions}")
    scan, full = statistics.median(scans), statistics.median(reports)
    summary = {
        "database": "postgresql" if args.database_url else "sqlite",
        "letters": args.letters,
        "conversions": conversions,
        "seed_seconds": round(seeding, 1),
        "scan_seconds": round(scan, 3),
        "report_seconds": round(full, 3),
        "report_vs_scan": round(full / scan, 1),
    }
    if args.json:
        print(json.dumps(summary))
        return
    print(
        f"experiment report over {args.letters:,} letters ({summary['database']}): "
        f"{full:.2f} s (median of {args.repeats}), {summary['report_vs_scan']}x one scan of "
        f"them ({scan:.2f} s); {conversions:,} conversions counted, as seeded"
    )


if __name__ == "__main__":
    main()
