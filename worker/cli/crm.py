"""`thankly crm pending`: the activities the CRM does not have yet; `crm check` and
`crm reconcile` for natively connected CRMs (HubSpot, Pipedrive)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

import typer

from worker.cli.common import (
    fail,
    out,
    parse_when,
    plain,
    print_json,
    session_factory,
    settings_or_exit,
    short_time,
)
from worker.cli.letters import JsonOpt, compact_table
from worker.retry import CallError

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


@crm_app.command("check")
def check(
    crm: Annotated[str, typer.Argument(help="hubspot, pipedrive, bitrix24 or amocrm")],
    as_json: JsonOpt = False,
) -> None:
    """Is the CRM connected? Settings, the webhook URL to paste, and what its API says."""
    from worker.crm.check import CHECKS

    if crm not in CHECKS:
        fail(f"no such CRM {crm!r}: choose {', '.join(CHECKS)}", 2)
    findings = CHECKS[crm](settings_or_exit())
    if as_json:
        print_json([{"ok": f.ok, "text": f.text} for f in findings])
    else:
        for finding in findings:
            out.print(("ok       " if finding.ok else "PROBLEM  ") + finding.text, markup=False)
    if not all(f.ok for f in findings):
        raise typer.Exit(1)


@crm_app.command("reconcile")
def reconcile(
    crm: Annotated[
        str | None,
        typer.Argument(help="hubspot, pipedrive, bitrix24 or amocrm (default: every connected)"),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(help="Look at deals won since this ISO time, not since the last run"),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Find won deals whose webhook never came, and plan their letters."""
    from worker.crm.check import CHECKS
    from worker.crm.reconcile import connected, run
    from worker.runtime import build_runtime

    moment = parse_when(since, "--since") if since else None
    runtime = build_runtime(settings_or_exit())
    names = sorted(connected(runtime))
    if crm is not None:
        if crm not in CHECKS:
            fail(f"no such CRM {crm!r}: choose {', '.join(CHECKS)}", 2)
        if crm not in names:
            fail(f"{crm} is not connected: run `thankly crm check {crm}`")
        names = [crm]
    if not names:
        fail("no CRM is connected natively: see `thankly crm check <crm>`")
    try:
        reports = [run(runtime, name, moment) for name in names]
    except CallError as exc:
        fail(f"the CRM's API refused: {exc}")
    finally:
        runtime.engine.dispose()
    if as_json:
        print_json([asdict(r) for r in reports])
        return
    for r in reports:
        if r.skipped:
            out.print(f"{r.source}: {r.skipped}", markup=False)
            continue
        out.print(
            f"{r.source}: {r.found} won deals from {short_time(r.since)} to "
            f"{short_time(r.until)} UTC; {r.already} had their webhook, {r.added} added",
            markup=False,
        )


# --- finding and fixing letters ---------------------------------------------------------
