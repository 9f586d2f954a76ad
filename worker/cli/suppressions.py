"""`thankly suppressions …`: who gets no letters, and lifting that, audited."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from worker.cli.common import cli_actor, date_time, fail, out, plain, print_json, session_factory

suppressions_app = typer.Typer(
    help="Addresses that get no letters: list, add, remove.", no_args_is_help=True
)
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
EmailArg = Annotated[str, typer.Argument(help="Email address.", show_default=False)]
ReasonOpt = Annotated[
    str, typer.Option("--reason", help="Why (kept in the audit log).", show_default=False)
]


@suppressions_app.command("list")
def list_suppressions(
    contact: Annotated[
        str | None, typer.Option("--contact", help="Only this address.", show_default=False)
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Suppressed addresses, newest first: reason, since, by which event or who."""
    from worker import suppressions

    try:
        rows = suppressions.list_suppressions(session_factory(), contact)
    except suppressions.SuppressionError as exc:
        fail(f"--contact: {exc}", 2)
    if as_json:
        print_json(rows)
        return
    if not rows:
        out.print(
            "no suppressed addresses" + (f" matching {contact}" if contact else ""), markup=False
        )
        return
    table = Table("address", "reason", "since (UTC)", "by")
    for column in table.columns:
        column.overflow = "fold"  # an address cut short is no use
    for r in rows:
        table.add_row(plain(r["email"]), plain(r["reason"]), date_time(r["since"]), plain(r["by"]))
    out.print(table)
    out.print(f"{len(rows)} suppressed address(es)")


@suppressions_app.command("add")
def add(email: EmailArg, reason: ReasonOpt, as_json: JsonOpt = False) -> None:
    """Send EMAIL no more letters; its pending letters become suppressed.

    The CRM is not told: only a recipient's own unsubscribe is reported to it.
    """
    from worker import suppressions
    from worker.clock import SystemClock

    try:
        done = suppressions.add(
            session_factory(), email, reason, SystemClock().now(), actor=cli_actor()
        )
    except suppressions.SuppressionError as exc:
        fail(str(exc), 2)
    if as_json:
        print_json(done.as_dict())
        return
    if not done.added:
        out.print(
            f"{done.email} was already suppressed since {date_time(done.since.isoformat())} "
            f"UTC ({done.reason}); nothing changed",
            markup=False,
        )
        return
    ids = ", ".join(f"#{i}" for i in done.suppressed_letters) or "none"
    out.print(f"suppressed {done.email}; pending letters suppressed: {ids}", markup=False)


@suppressions_app.command("remove")
def remove(email: EmailArg, reason: ReasonOpt, as_json: JsonOpt = False) -> None:
    """Lift the suppression of EMAIL: later events plan letters for it again.

    Letters already suppressed stay suppressed.
    """
    from worker import suppressions
    from worker.clock import SystemClock

    try:
        done = suppressions.remove(
            session_factory(), email, reason, SystemClock().now(), actor=cli_actor()
        )
    except suppressions.NotSuppressed as exc:
        fail(str(exc), 1)
    except suppressions.SuppressionError as exc:
        fail(str(exc), 2)
    if as_json:
        print_json(done.as_dict())
        return
    out.print(
        f"removed {done.email} from the suppression list (was: {done.was_reason}); "
        "later events plan letters for it again",
        markup=False,
    )
    if done.letters_staying_suppressed:
        out.print(
            f"{done.letters_staying_suppressed} letter(s) already suppressed stay suppressed",
            markup=False,
        )
