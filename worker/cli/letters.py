"""`thankly letters show/list/preview`: what happened to a letter.

The commands that change letters are in `letter_actions.py`."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table

from worker.admin.find import ERROR_CLASSES, STATUSES, LetterFilter, find_letters
from worker.cli.common import (
    choice,
    fail,
    out,
    plain,
    print_json,
    session_factory,
    short_time,
)

letters_app = typer.Typer(help="Inspect letters.", no_args_is_help=True)
# Ids are BIGINT: a larger number is a usage error (exit 2), not a database overflow.
MAX_ID = 2**63 - 1
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def compact_table(*headers: str) -> Table:
    """Header rule only, one space between columns: more room for data at 80 columns."""
    return Table(*headers, box=box.SIMPLE_HEAD, show_edge=False, padding=0)


@letters_app.command("show")
def show(
    letter_id: Annotated[int, typer.Argument(help="Letter id.", min=1, max=MAX_ID)],
    as_json: JsonOpt = False,
) -> None:
    """A letter's timeline: planned, attempts, sent, opens, clicks, CRM deliveries."""
    from worker.admin.timeline import letter_timeline

    story = letter_timeline(session_factory(), letter_id)
    if story is None:
        fail(f"no letter #{letter_id}")
    if as_json:
        print_json(story)
        return
    reason = f" ({story['status_reason']})" if story["status_reason"] else ""
    out.print(f"letter #{story['id']}  {story['status']}{reason}", markup=False)
    out.print(
        f"  {story['letter']} in {story['locale']} to {story['contact']} (rule {story['rule']})",
        markup=False,
    )
    if story["experiment"] is not None:
        out.print(f"  experiment {story['experiment']}, arm {story['arm']}", markup=False)
    out.print(f"  Message-ID {story['message_id']}", markup=False)
    planned, due = story["planned_at"], story["due_at"]
    if planned and planned != due:  # moved by send-now, a replay or a reschedule
        out.print(f"  planned for {planned}; due {due}", markup=False)
    else:
        out.print(f"  due {due}", markup=False)
    if story["subject"]:
        out.print(f"  subject: {story['subject']}", markup=False)
    out.print(
        f"  opens: {story['opens']['human']} human, {story['opens']['machine']} machine; "
        f"clicks: {story['clicks']}",
        markup=False,
    )
    if story["last_error"]:
        out.print(f"  last error: {story['last_error']}", markup=False)
    table = Table("at (UTC)", "what", "detail", box=None, pad_edge=False)
    table.columns[0].no_wrap = True
    table.columns[2].overflow = "fold"  # a Message-ID cut short is no use to an admin
    for entry in story["timeline"]:
        table.add_row(
            short_time(entry["at"], seconds=True), plain(entry["what"]), plain(entry["detail"])
        )
    out.print(table)


StatusOpt = Annotated[str | None, typer.Option("--status", help=f"One of: {', '.join(STATUSES)}.")]
LetterOpt = Annotated[str | None, typer.Option("--letter", help="Letter name.")]
SinceOpt = Annotated[str | None, typer.Option("--since", help="Changed at or after (ISO).")]
UntilOpt = Annotated[str | None, typer.Option("--until", help="Changed before (ISO).")]
ErrorOpt = Annotated[
    str | None,
    typer.Option(
        "--error-class", help=f"An attempt failed at this step: {', '.join(ERROR_CLASSES)}."
    ),
]
ReasonOpt = Annotated[str | None, typer.Option("--reason", help="Why (kept in the audit log).")]


def letter_filter(
    ids: list[int] | None = None,
    status: str | None = None,
    letter: str | None = None,
    contact: str | None = None,
    since: str | None = None,
    until: str | None = None,
    error_class: str | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> LetterFilter:
    from worker.cli.common import parse_when

    return LetterFilter(
        ids=ids or [],
        status=choice(status, STATUSES, "--status"),
        letter=letter,
        contact=contact,
        since=parse_when(since, "--since") if since else None,
        until=parse_when(until, "--until") if until else None,
        error_class=choice(error_class, ERROR_CLASSES, "--error-class"),
        limit=limit,
        offset=offset,
    )


def _error_step(last_error: str | None) -> str:
    """`connect: 421 try later` → `connect`; `letters show` has the whole text."""
    return (last_error or "").partition(":")[0][:10]


def letters_table(rows: list[dict[str, Any]], when: dict[int, str] | None = None) -> Table:
    """Eight columns in 80: times as `11-23 09:00` (UTC, said in the headers), the error
    as its step; only the address may fold, everything else stays whole."""
    due = "due (UTC)" if when is None else "sends (UTC)"
    table = compact_table("id", "status", "letter", "to", due, "tries", "error")
    for column in table.columns:
        column.no_wrap = column.header != "to"
    table.columns[3].overflow = "fold"
    for r in rows:
        at = r["due_at"] if when is None else when.get(r["id"], "")
        table.add_row(
            str(r["id"]),
            plain(r["status"]),
            plain(f"{r['letter']}/{r['locale']}"),
            plain(r["contact"]),
            short_time(at),
            str(r["attempts"]),
            plain(_error_step(r["last_error"])),
        )
    return table


@letters_app.command("list")
def list_letters(
    status: StatusOpt = None,
    letter: LetterOpt = None,
    contact: Annotated[str | None, typer.Option("--contact", help="Recipient email.")] = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    error_class: ErrorOpt = None,
    limit: Annotated[int, typer.Option("--limit", help="Rows per page.")] = 50,
    page: Annotated[int, typer.Option("--page", help="Page number, from 1.")] = 1,
    as_json: JsonOpt = False,
) -> None:
    """Letters matching the filters, newest first, a page at a time."""
    from worker.admin.find import count_letters, summary

    if limit < 1 or page < 1:
        fail("--limit and --page start at 1", 2)
    flt = letter_filter(
        None, status, letter, contact, since, until, error_class, limit, (page - 1) * limit
    )
    flt.newest_first = True
    factory = session_factory()
    rows = [summary(x) for x in find_letters(factory, flt)]
    if as_json:
        print_json(rows)
        return
    total = count_letters(factory, flt)
    pages = max(1, -(-total // limit))
    if not rows:
        out.print("no letters match" if total == 0 else f"page {page} is past the last, {pages}")
        return
    out.print(letters_table(rows))
    more = f"; next: --page {page + 1}" if page < pages else ""
    out.print(f"{total} letter(s), page {page} of {pages}{more}", markup=False)


@letters_app.command("preview")
def preview_letter(
    letter_id: Annotated[int, typer.Argument(help="Letter id.", min=1, max=MAX_ID)],
    fmt: Annotated[str, typer.Option("--format", help="text, html or eml.")] = "text",
) -> None:
    """A stored letter exactly as it will be sent (or re-sent); sends and changes nothing."""
    from worker.cli.preview import letter_preview

    letter_preview(letter_id, fmt)
