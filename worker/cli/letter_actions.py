"""`thankly letters replay/cancel/send-now`: changing letters, confirmed and audited."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from worker.admin.find import LetterFilter, find_letters
from worker.admin.operations import Outcome
from worker.cli.common import (
    cli_actor,
    err,
    fail,
    out,
    print_json,
    session_factory,
    settings_or_exit,
    short_time,
)
from worker.cli.letters import (
    MAX_ID,
    ErrorOpt,
    JsonOpt,
    LetterOpt,
    ReasonOpt,
    SinceOpt,
    StatusOpt,
    UntilOpt,
    letter_filter,
    letters_app,
    letters_table,
)


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

    from worker.admin.find import summary
    from worker.admin.operations import replay
    from worker.clock import SystemClock

    if not ids and not status:
        fail("say which letters: ids, or a filter such as --status failed [--since …]", 2)
    settings = settings_or_exit()
    factory = session_factory()
    flt = letter_filter(ids, status, letter, None, since, until, error_class)
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
                letters_table(
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
