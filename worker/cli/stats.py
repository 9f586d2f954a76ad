"""`thankly stats`: the numbers per letter and locale, as a table or JSON."""

from __future__ import annotations

from worker.cli.common import (
    out,
    plain,
    print_json,
    session_factory,
)
from worker.cli.letters import JsonOpt, SinceOpt, compact_table


def _rate(value: float | None) -> str:
    return f"{value:.0%}" if value is not None else "-"


def stats_command(since: SinceOpt = None, as_json: JsonOpt = False) -> None:
    """Per letter and locale: sent, failed, opens, clicks, unsubscribes and rates.

    Also scheduled, unknown and suppressed; rates are over sent letters. Letters an
    experiment held out are in --json (`held_out`) and summed under the table."""
    from worker.admin.stats import stats
    from worker.cli.common import parse_when

    rows = stats(session_factory(), parse_when(since, "--since") if since else None)
    if as_json:
        print_json(rows)
        return
    if not rows:
        out.print("no letters yet")
        return
    # Eleven columns fit an 80-column terminal whole: short headers, the longest letter
    # name (`referral_made/pl`) never folds, numbers right-aligned; the JSON has full names.
    table = compact_table(
        "letter",
        "sched",
        "sent",
        "fail",
        "unkn",
        "supp",
        "opens",
        "click",
        "unsub",
        "open%",
        "click%",
    )
    table.caption = "opens: human/machine; rates are over sent letters"
    table.columns[0].no_wrap = True
    for column in table.columns[1:]:
        column.justify = "right"
    for r in rows:
        table.add_row(
            plain(f"{r['letter']}/{r['locale']}"),
            str(r["scheduled"]),
            str(r["sent"]),
            str(r["failed"]),
            str(r["unknown"]),
            str(r["suppressed"]),
            f"{r['human_opens']}/{r['machine_opens']}",
            str(r["clicks"]),
            str(r["unsubscribes"]),
            _rate(r["open_rate"]),
            _rate(r["click_rate"]),
        )
    out.print(table)
    held = sum(r["held_out"] for r in rows)
    if held:
        out.print(f"held out by experiments: {held} (see `thankly experiments report`)")
