"""`thankly letters …` and `thankly crm …`: what happened to a letter, what the CRM lacks."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table
from sqlalchemy.orm import Session, sessionmaker

from worker.cli_common import fail, out, settings_or_exit
from worker.db import make_engine, make_session_factory

letters_app = typer.Typer(help="Inspect letters.", no_args_is_help=True)
crm_app = typer.Typer(help="CRM write-back.", no_args_is_help=True)
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def _factory() -> sessionmaker[Session]:
    settings = settings_or_exit()
    return make_session_factory(make_engine(settings.effective_database_url))


@letters_app.command("show")
def show(
    letter_id: Annotated[int, typer.Argument(help="Letter id.")], as_json: JsonOpt = False
) -> None:
    """A letter's timeline: planned, attempts, sent, opens, clicks, CRM deliveries."""
    from worker.timeline import letter_timeline

    story = letter_timeline(_factory(), letter_id)
    if story is None:
        fail(f"no letter #{letter_id}")
    if as_json:
        out.print(json.dumps(story, ensure_ascii=False, indent=2), markup=False)
        return
    reason = f" ({story['status_reason']})" if story["status_reason"] else ""
    out.print(f"letter #{story['id']}  {story['status']}{reason}", markup=False)
    out.print(
        f"  {story['letter']} in {story['locale']} to {story['contact']} (rule {story['rule']})",
        markup=False,
    )
    out.print(f"  Message-ID {story['message_id']}", markup=False)
    out.print(
        f"  opens: {story['opens']['human']} human, {story['opens']['machine']} machine; "
        f"clicks: {story['clicks']}",
        markup=False,
    )
    if story["last_error"]:
        out.print(f"  last error: {story['last_error']}", markup=False)
    table = Table("at", "what", "detail", box=None, pad_edge=False)
    for entry in story["timeline"]:
        table.add_row(entry["at"], entry["what"], entry["detail"])
    out.print(table)


@crm_app.command("pending")
def pending(as_json: JsonOpt = False) -> None:
    """CRM activities not delivered yet, with their last error."""
    from worker.timeline import pending_activities

    rows = pending_activities(_factory())
    if as_json:
        out.print(json.dumps(rows, indent=2), markup=False)
        return
    if not rows:
        out.print("nothing pending: the CRM has every activity")
        return
    table = Table("id", "kind", "letter", "status", "attempts", "next attempt", "last error")
    for r in rows:
        table.add_row(
            str(r["id"]),
            r["kind"],
            str(r["letter_id"]),
            r["status"],
            str(r["attempts"]),
            r["next_attempt_at"],
            r["last_error"] or "",
        )
    out.print(table)
