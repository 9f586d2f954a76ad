"""`thankly letters …` and `thankly crm …`: what happened to a letter, what the CRM lacks."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.table import Table
from sqlalchemy.orm import Session, sessionmaker

from worker.admin import LetterFilter, Outcome, find_letters
from worker.cli_common import err, fail, out, settings_or_exit
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
    if story["subject"]:
        out.print(f"  subject: {story['subject']}", markup=False)
    out.print(
        f"  opens: {story['opens']['human']} human, {story['opens']['machine']} machine; "
        f"clicks: {story['clicks']}",
        markup=False,
    )
    if story["last_error"]:
        out.print(f"  last error: {story['last_error']}", markup=False)
    table = Table("at", "what", "detail", box=None, pad_edge=False)
    for column in table.columns:
        column.overflow = "fold"  # a Message-ID cut short is no use to an admin
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
    for column in table.columns:
        column.overflow = "fold"
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


# --- finding and fixing letters ---------------------------------------------------------

StatusOpt = Annotated[str | None, typer.Option("--status", help="e.g. failed, unknown, sent.")]
LetterOpt = Annotated[str | None, typer.Option("--letter", help="Letter name.")]
SinceOpt = Annotated[str | None, typer.Option("--since", help="Changed at or after (ISO).")]
UntilOpt = Annotated[str | None, typer.Option("--until", help="Changed before (ISO).")]
ErrorOpt = Annotated[
    str | None, typer.Option("--error-class", help="An attempt failed with this class.")
]
ReasonOpt = Annotated[str | None, typer.Option("--reason", help="Why (kept in the audit log).")]


def _actor() -> str:
    import getpass

    try:
        return f"{getpass.getuser()} (cli)"
    except (KeyError, OSError):
        return "unknown user (cli)"


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
    from worker.cli_common import parse_when

    return LetterFilter(
        ids=ids or [],
        status=status,
        letter=letter,
        contact=contact,
        since=parse_when(since, "--since") if since else None,
        until=parse_when(until, "--until") if until else None,
        error_class=error_class,
        limit=limit,
        offset=offset,
    )


def _letters_table(rows: list[dict[str, Any]], when: dict[int, str] | None = None) -> Table:
    table = Table(
        "id",
        "status",
        "letter",
        "to",
        "updated",
        "tries",
        "last error",
        *(["sends at"] if when is not None else []),
    )
    for r in rows:
        cells = [
            str(r["id"]),
            r["status"],
            f"{r['letter']}/{r['locale']}",
            r["contact"],
            r["updated_at"][:19],
            str(r["attempts"]),
            (r["last_error"] or "")[:60],
        ]
        if when is not None:
            cells.append(when.get(r["id"], "")[:19])
        table.add_row(*cells)
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
    """Letters matching the filters, oldest first, a page at a time."""
    from worker.admin import find_letters, summary

    if limit < 1 or page < 1:
        fail("--limit and --page start at 1", 2)
    flt = _filter(
        None, status, letter, contact, since, until, error_class, limit + 1, (page - 1) * limit
    )
    found = [summary(x) for x in find_letters(_factory(), flt)]
    more, rows = len(found) > limit, found[:limit]
    if as_json:
        out.print(json.dumps(rows, ensure_ascii=False, indent=2), markup=False)
        return
    if not rows:
        out.print("no letters match")
        return
    out.print(_letters_table(rows))
    if more:
        out.print(f"more: --page {page + 1}")


def _confirm(question: str, yes: bool) -> None:
    import sys

    if yes:
        return
    if not sys.stdin.isatty():
        fail(f"{question} Add --yes to confirm (no terminal to ask on).", 2)
    if not typer.confirm(question, default=False):
        fail("nothing changed", 1)


def _report(outcome: Outcome, verb: str) -> None:
    out.print(f"{verb} {len(outcome.done)}", markup=False)
    for reason, count in sorted(outcome.refused_by_reason().items()):
        out.print(f"refused {count}: {reason}", markup=False)


@letters_app.command("replay")
def replay_letters(
    ids: Annotated[list[int] | None, typer.Argument(help="Letter ids.")] = None,
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

    from worker.admin import replay, summary
    from worker.clock import SystemClock

    if not ids and not status:
        fail("say which letters: ids, or a filter such as --status failed [--since …]", 2)
    settings = settings_or_exit()
    factory = _factory()
    flt = _filter(ids, status, letter, None, since, until, error_class)
    now = SystemClock().now()
    common: dict[str, Any] = {
        "actor": _actor(),
        "reason": reason,
        "rate_per_second": settings.replay_rate_per_second,
        "force": force,
        "reuse_rendered": reuse_rendered,
    }
    preview = replay(factory, flt, now, dry_run=True, **common)
    candidates = {x.id: summary(x) for x in find_letters(factory, LetterFilter(ids=preview.done))}
    if dry_run:
        if as_json:
            out.print(
                json.dumps(
                    {"would_replay": [candidates[i] for i in preview.done], **preview.as_dict()},
                    indent=2,
                ),
                markup=False,
            )
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
        return
    if not preview.done:
        _report(preview, "replayed")
        return
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
        out.print(json.dumps(outcome.as_dict(), indent=2), markup=False)
        return
    _report(outcome, "replayed")
    if outcome.done:
        last = max(outcome.when.values()).isoformat()
        out.print(
            f"they go out from now until {last[:19]} (THANKLY_REPLAY_RATE_PER_SECOND="
            f"{settings.replay_rate_per_second}/s)",
            markup=False,
        )


@letters_app.command("cancel")
def cancel_letters(
    ids: Annotated[list[int], typer.Argument(help="Letter ids.")],
    reason: ReasonOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Cancel scheduled or queued letters."""
    from worker.admin import cancel
    from worker.clock import SystemClock

    outcome = cancel(_factory(), ids, SystemClock().now(), actor=_actor(), reason=reason)
    if as_json:
        out.print(json.dumps(outcome.as_dict(), indent=2), markup=False)
        return
    _report(outcome, "cancelled")
    if outcome.refused and not outcome.done:
        raise typer.Exit(1)


@letters_app.command("send-now")
def send_now_letters(
    ids: Annotated[list[int], typer.Argument(help="Letter ids.")],
    ignore_window: Annotated[
        bool, typer.Option("--ignore-window", help="Send even outside the send window.")
    ] = False,
    reason: ReasonOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Skip the wait for scheduled letters (the send window still applies)."""
    from worker.admin import send_now
    from worker.clock import SystemClock
    from worker.rules import RulesError, RulesStore

    settings = settings_or_exit()
    try:
        defaults = RulesStore(settings.rules_file, settings.templates_dir).get().defaults
    except RulesError as exc:
        fail(f"the rules file is not valid, so the send window is unknown:\n{exc}")
    outcome = send_now(
        _factory(),
        ids,
        SystemClock().now(),
        actor=_actor(),
        reason=reason,
        window=defaults.send_window,
        default_timezone=defaults.timezone,
        ignore_window=ignore_window,
    )
    if as_json:
        out.print(json.dumps(outcome.as_dict(), indent=2), markup=False)
        return
    _report(outcome, "moved")
    for letter_id, due in sorted(outcome.when.items()):
        out.print(f"#{letter_id} due {due.isoformat()}", markup=False)
    if outcome.refused and not outcome.done:
        raise typer.Exit(1)


def _rate(value: float | None) -> str:
    return f"{value:.0%}" if value is not None else "-"


def stats_command(since: SinceOpt = None, as_json: JsonOpt = False) -> None:
    """Per letter and locale: scheduled, sent, failed, unknown, suppressed, opens, clicks,
    unsubscribes, open and click rates."""
    from worker.admin import stats
    from worker.cli_common import parse_when

    rows = stats(_factory(), parse_when(since, "--since") if since else None)
    if as_json:
        out.print(json.dumps(rows, indent=2), markup=False)
        return
    if not rows:
        out.print("no letters yet")
        return
    # Twelve columns must fit an 80-column terminal: cells fold rather than hide data.
    table = Table(
        "letter",
        "sched",
        "sent",
        "failed",
        "unknown",
        "suppr",
        "opens h/m",
        "clicks",
        "unsubs",
        "open rate",
        "click rate",
        padding=(0, 1),
    )
    for column in table.columns:
        column.overflow = "fold"
    for r in rows:
        table.add_row(
            f"{r['letter']}/{r['locale']}",
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
    letter_id: Annotated[int, typer.Argument(help="Letter id.")],
    fmt: Annotated[str, typer.Option("--format", help="text, html or eml.")] = "text",
) -> None:
    """A stored letter exactly as it will be sent (or re-sent); sends and changes nothing."""
    from worker.cli_preview import letter_preview

    letter_preview(letter_id, fmt)
