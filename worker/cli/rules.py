"""`thankly rules …`: check, explain and apply the ops-edited rules file."""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from worker.cli.common import (
    cli_actor,
    err,
    out,
    parse_when,
    print_json,
    read_event_file,
    session_factory,
)
from worker.cli.common import fail as _fail
from worker.cli.common import settings_or_exit as _settings
from worker.cli.preview import templates_report
from worker.experiments.assignment import StoredArm
from worker.letters.catalogue import Catalogue
from worker.planning.describe import cap_text, describe, send_window_text
from worker.planning.rules import RulesError, load_rules
from worker.planning.rules_model import RuleSet
from worker.settings import Settings

rules_app = typer.Typer(help="Check, explain and apply the delay rules.", no_args_is_help=True)
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def rules_or_exit(settings: Settings, file: Path | None = None) -> RuleSet:
    try:
        return load_rules(file or settings.rules_file, Catalogue.scan(settings.templates_dir))
    except RulesError as exc:
        for line in exc.lines():
            err.print(line, markup=False)
        _fail(f"{len(exc.problems)} problem(s) in {exc.path}; nothing was changed")


@rules_app.command("check")
def check(
    file: Annotated[
        # No square brackets: Rich would read "[default: …]" as markup and drop it.
        Path | None,
        typer.Argument(help="Rules file; default: THANKLY_RULES_FILE (config/rules.yaml)."),
    ] = None,
) -> None:
    """Validate a rules file, then its letters (as `templates check`); print one line per
    rule, or each problem with its line."""
    settings = _settings()
    rules = rules_or_exit(settings, file)
    d = rules.defaults
    window, cap = send_window_text(d.send_window), cap_text(d.frequency_cap)
    out.print(f"{rules.source}: {len(rules.rules)} rule(s), valid")
    out.print(f"defaults: timezone {d.timezone}; locale {d.locale}; send {window}; cap {cap}")
    for rule in rules.rules:
        out.print(describe(rule))
    # The rules name letters; a letter that cannot render fails at sending time, so a
    # check of the rules is not passed while their letters have problems.
    if not templates_report(settings, d.timezone):
        raise typer.Exit(1)


@rules_app.command("explain")
def explain_command(
    event_file: Annotated[Path, typer.Argument(help="Event JSON (generic format).")],
    at: Annotated[
        str | None,
        typer.Option("--at", help="As if the event happened, and arrived, at this ISO time."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Which rule matches an event, which letter and locale, and when it would be due."""
    from worker.planning.explain import explain

    settings = _settings()
    event = read_event_file(event_file)
    if at is not None:
        event = event.model_copy(update={"timestamp": parse_when(at, "--at")})
    # Judged as if it arrived now (or, with --at, as if it happened and arrived then), as
    # ingest would: an event past max_event_age plans nothing.
    now = event.timestamp if at is not None else datetime.now(UTC)
    rules = rules_or_exit(settings)
    stored, arms_note = _stored_arms(rules)
    result = explain(event, rules, Catalogue.scan(settings.templates_dir), now, stored)
    result["arms_from"] = arms_note
    if as_json:
        print_json(result)
        return
    _print_explanation(event.timestamp, result)


def _stored_arms(rules: RuleSet) -> tuple[StoredArm | None, str | None]:
    """A lookup of the arms contacts already have, when any rule runs an experiment: a
    contact keeps its first arm, so the hash alone may be wrong for a known contact. A
    database that cannot be read leaves the hash, and says so."""
    if not rules.experiments:
        return None, None
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    url = make_url(_settings().effective_database_url)
    if url.get_backend_name() == "sqlite" and not Path(url.database or "").is_file():
        return None, "hash only (no database yet)"  # and none is created by looking

    from worker.experiments.assignment import stored_arm

    try:
        session = session_factory()()
        lookup = stored_arm(session)
        lookup("", "")  # reads the table once: a missing or unmigrated database shows here
    except SQLAlchemyError as exc:
        return None, f"hash only (the database could not be read: {type(exc).__name__})"
    return lookup, "the contact's stored arm, else the hash"


def _print_explanation(occurred: datetime, result: dict[str, Any]) -> None:
    # The contact and reasons come from the event file: text, never Rich markup.
    say = functools.partial(out.print, markup=False)
    say(f"event    {result['event_type']} for {result['contact']} at {occurred.isoformat()}")
    if result["letter"] is None:
        say(f"result   nothing is sent: {result['reason']}")
        return
    wanted = result["wanted_locale"]
    note = (
        f" (contact's locale {wanted!r} falls back)"
        if wanted and wanted != result["locale"]
        else ""
    )
    say(f"rule     {result['rule']}")
    if result["experiment"] is not None:
        say(
            f"arm      {result['arm']} of experiment {result['experiment']} ({result['arms_from']})"
        )
    if result["held_out"]:
        say("result   held out: no letter is sent; conversions are counted from the due time")
    say(f"letter   {result['letter']} in {result['locale']}{note}")
    say(f"due      {result['due_at']}  =  {result['due_local']} {result['timezone']}")
    for other in result["rules"][1:]:
        say(f"also     {other['rule']}: {other['reason'] or other['due_at']}")


@rules_app.command("apply")
def apply(
    reschedule_: Annotated[
        bool, typer.Option("--reschedule", help="Recompute due times of scheduled letters.")
    ] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show, change nothing.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Apply the current rules to letters that are still scheduled."""
    from worker.clock import SystemClock
    from worker.db import make_engine, make_session_factory
    from worker.planning.reschedule import reschedule

    if not reschedule_:
        _fail("say what to apply: --reschedule (with --dry-run to preview)", 2)
    settings = _settings()
    rules = rules_or_exit(settings)
    engine = make_engine(settings.effective_database_url)
    try:
        changes = reschedule(
            make_session_factory(engine),
            rules,
            Catalogue.scan(settings.templates_dir),
            SystemClock().now(),
            dry_run=dry_run,
            actor=cli_actor(),
        )
    finally:
        engine.dispose()
    moved = [c for c in changes if c.moves]
    if as_json:
        print_json(
            [
                {
                    "letter_id": c.letter_id,
                    "rule": c.rule,
                    "old_due_at": c.old_due_at.isoformat(),
                    "new_due_at": c.new_due_at.isoformat() if c.new_due_at else None,
                    "moves": c.moves,
                    "note": c.note,
                }
                for c in changes
            ]
        )
        return
    for c in changes:
        if c.moves:
            assert c.new_due_at is not None
            out.print(
                f"#{c.letter_id} {c.rule}: {c.old_due_at.isoformat()} → {c.new_due_at.isoformat()}"
            )
        elif c.note:
            out.print(f"#{c.letter_id} {c.rule}: left as is, {c.note}")
    verb = "would move" if dry_run else "moved"
    out.print(f"{verb} {len(moved)} of {len(changes)} scheduled letter(s)")
