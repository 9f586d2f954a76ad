"""`thankly letters …` and `thankly crm …`: what happened to a letter, what the CRM lacks."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table

from worker.admin.operations import ERROR_CLASSES, STATUSES, LetterFilter, Outcome, find_letters
from worker.cli.common import (
    choice,
    cli_actor,
    err,
    fail,
    out,
    plain,
    print_json,
    session_factory,
    settings_or_exit,
    short_time,
)

letters_app = typer.Typer(help="Inspect letters.", no_args_is_help=True)
crm_app = typer.Typer(help="CRM write-back.", no_args_is_help=True)
# Ids are BIGINT: a larger number is a usage error (exit 2), not a database overflow.
MAX_ID = 2**63 - 1
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def _compact_table(*headers: str) -> Table:
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
    table = _compact_table("id", "kind", "letter", "status", "tries", "next (UTC)", "last error")
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


def _filter(
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


def _letters_table(rows: list[dict[str, Any]], when: dict[int, str] | None = None) -> Table:
    """Eight columns in 80: times as `11-23 09:00` (UTC, said in the headers), the error
    as its step; only the address may fold, everything else stays whole."""
    due = "due (UTC)" if when is None else "sends (UTC)"
    table = _compact_table("id", "status", "letter", "to", due, "tries", "error")
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
    from worker.admin.operations import count_letters, find_letters, summary

    if limit < 1 or page < 1:
        fail("--limit and --page start at 1", 2)
    flt = _filter(
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
    out.print(_letters_table(rows))
    more = f"; next: --page {page + 1}" if page < pages else ""
    out.print(f"{total} letter(s), page {page} of {pages}{more}", markup=False)


def _confirm(question: str, yes: bool) -> None:
    import sys

    if yes:
        return
    if not sys.stdin.isatty():
        fail(f"{question} Add --yes to confirm (no terminal to ask on).", 2)
    if not typer.confirm(question, default=False):
        fail("nothing changed", 1)


def _exit_if_nothing_done(outcome: Outcome) -> None:
    """Exit 1 when every letter was refused: a script must not read that as done."""
    if not outcome.done:
        raise typer.Exit(1)


def _report(outcome: Outcome, verb: str) -> None:
    out.print(f"{verb} {len(outcome.done)}", markup=False)
    for reason, count in sorted(outcome.refused_by_reason().items()):
        out.print(f"refused {count}: {reason}", markup=False)


@letters_app.command("replay")
def replay_letters(
    ids: Annotated[list[int] | None, typer.Argument(help="Letter ids.", min=1, max=MAX_ID)] = None,
    status: StatusOpt = None,
    letter: LetterOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    error_class: ErrorOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List, change nothing.")] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask.")] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Also replay letters whose outcome is unknown.")
    ] = False,
    reason: ReasonOpt = None,
    reuse_rendered: Annotated[
        bool, typer.Option("--reuse-rendered", help="Send exactly what was rendered before.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Send failed letters again: same letter, same Message-ID, paced."""
    from rich.progress import Progress

    from worker.admin.operations import replay, summary
    from worker.clock import SystemClock

    if not ids and not status:
        fail("say which letters: ids, or a filter such as --status failed [--since …]", 2)
    settings = settings_or_exit()
    factory = session_factory()
    flt = _filter(ids, status, letter, None, since, until, error_class)
    now = SystemClock().now()
    common: dict[str, Any] = {
        "actor": cli_actor(),
        "reason": reason,
        "rate_per_second": settings.replay_rate_per_second,
        "force": force,
        "reuse_rendered": reuse_rendered,
    }
    preview = replay(factory, flt, now, dry_run=True, **common)
    candidates = {x.id: summary(x) for x in find_letters(factory, LetterFilter(ids=preview.done))}
    if dry_run:
        if as_json:
            print_json({"would_replay": [candidates[i] for i in preview.done], **preview.as_dict()})
            _exit_if_nothing_done(preview)
            return
        if preview.done:
            out.print(
                _letters_table(
                    [candidates[i] for i in preview.done],
                    {k: v.isoformat() for k, v in preview.when.items()},
                )
            )
        _report(preview, "would replay")
        out.print("dry run: nothing changed")
        _exit_if_nothing_done(preview)
        return
    if not preview.done:
        _report(preview, "replayed")
        _exit_if_nothing_done(preview)
    unknown = [i for i in preview.done if candidates[i]["status"] == "unknown"]
    if unknown:
        err.print(
            f"warning: {len(unknown)} letter(s) have an unknown outcome; their "
            "recipients may receive them twice"
        )
    _confirm(f"Replay {len(preview.done)} letter(s)?", yes)
    with Progress(transient=True, disable=as_json) as bar:
        task = bar.add_task("replaying", total=len(preview.done))
        outcome = replay(factory, flt, now, progress=lambda: bar.advance(task), **common)
    if as_json:
        print_json(outcome.as_dict())
        _exit_if_nothing_done(outcome)
        return
    _report(outcome, "replayed")
    if outcome.done:
        last = short_time(max(outcome.when.values()).isoformat(), seconds=True)
        out.print(
            f"they go out from now until {last} UTC (THANKLY_REPLAY_RATE_PER_SECOND="
            f"{settings.replay_rate_per_second}/s)",
            markup=False,
        )
    _exit_if_nothing_done(outcome)


@letters_app.command("cancel")
def cancel_letters(
    ids: Annotated[list[int], typer.Argument(help="Letter ids.", min=1, max=MAX_ID)],
    reason: ReasonOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Cancel scheduled or queued letters."""
    from worker.admin.operations import cancel
    from worker.clock import SystemClock

    outcome = cancel(session_factory(), ids, SystemClock().now(), actor=cli_actor(), reason=reason)
    if as_json:
        print_json(outcome.as_dict())
    else:
        _report(outcome, "cancelled")
    _exit_if_nothing_done(outcome)


@letters_app.command("send-now")
def send_now_letters(
    ids: Annotated[list[int], typer.Argument(help="Letter ids.", min=1, max=MAX_ID)],
    ignore_window: Annotated[
        bool, typer.Option("--ignore-window", help="Send even outside the send window.")
    ] = False,
    reason: ReasonOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Skip the wait for scheduled letters (the send window still applies)."""
    from worker.admin.operations import send_now
    from worker.clock import SystemClock
    from worker.planning.rules import RulesError, RulesStore

    settings = settings_or_exit()
    try:
        defaults = RulesStore(settings.rules_file, settings.templates_dir).get().defaults
    except RulesError as exc:
        fail(f"the rules file is not valid, so the send window is unknown:\n{exc}")
    outcome = send_now(
        session_factory(),
        ids,
        SystemClock().now(),
        actor=cli_actor(),
        reason=reason,
        window=defaults.send_window,
        default_timezone=defaults.timezone,
        ignore_window=ignore_window,
    )
    if as_json:
        print_json(outcome.as_dict())
    else:
        _report(outcome, "moved")
        for letter_id, due in sorted(outcome.when.items()):
            out.print(f"#{letter_id} due {short_time(due.isoformat())} UTC", markup=False)
    _exit_if_nothing_done(outcome)


def _rate(value: float | None) -> str:
    return f"{value:.0%}" if value is not None else "-"


def stats_command(since: SinceOpt = None, as_json: JsonOpt = False) -> None:
    """Per letter and locale: sent, failed, opens, clicks, unsubscribes and rates.

    Also scheduled, unknown and suppressed; rates are over sent letters."""
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
    table = _compact_table(
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


@letters_app.command("preview")
def preview_letter(
    letter_id: Annotated[int, typer.Argument(help="Letter id.", min=1, max=MAX_ID)],
    fmt: Annotated[str, typer.Option("--format", help="text, html or eml.")] = "text",
) -> None:
    """A stored letter exactly as it will be sent (or re-sent); sends and changes nothing."""
    from worker.cli.preview import letter_preview

    letter_preview(letter_id, fmt)
