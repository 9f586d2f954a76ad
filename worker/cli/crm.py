"""`thankly crm pending`: the activities the CRM does not have yet."""

from __future__ import annotations

import typer

from worker.cli.common import (
    out,
    plain,
    print_json,
    session_factory,
    short_time,
)
from worker.cli.letters import JsonOpt, compact_table

crm_app = typer.Typer(help="CRM write-back.", no_args_is_help=True)


@crm_app.command("pending")
def pending(as_json: JsonOpt = False) -> None:
    """CRM activities not delivered yet, with their last error."""
    from worker.admin.timeline import pending_activities

    rows = pending_activities(session_factory())
    if as_json:
        print_json(rows)
        return
    if not rows:
        out.print("nothing pending: the CRM has every activity")
        return
    table = compact_table("id", "kind", "letter", "status", "tries", "next (UTC)", "last error")
    for column in table.columns[:-1]:
        column.no_wrap = True
    table.columns[-1].overflow = "fold"
    for r in rows:
        table.add_row(
            str(r["id"]),
            plain(r["kind"]),
            f"#{r['letter_id']}",
            plain(r["status"]),
            str(r["attempts"]),
            short_time(r["next_attempt_at"]),
            plain(r["last_error"]),
        )
    out.print(table)
    out.print(f"{len(rows)} pending", markup=False)


# --- finding and fixing letters ---------------------------------------------------------
