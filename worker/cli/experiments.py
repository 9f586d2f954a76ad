"""`thankly experiments …`: which experiments run, and what each arm's letters did."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.table import Table

from worker.cli.common import date_time, fail, out, parse_when, plain, print_json, session_factory
from worker.cli.common import settings_or_exit as _settings

experiments_app = typer.Typer(
    help="A/B tests of letters against a holdout: list them, report their lift.",
    no_args_is_help=True,
)
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def _rules() -> Any:
    from worker.cli.rules import _rules as load

    return load(_settings())


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _interval(value: list[float] | None, points: bool = False) -> str:
    if value is None:
        return ""
    if points:
        return f"{value[0] * 100:+.1f} to {value[1] * 100:+.1f}"
    return f"{value[0]:.1%} to {value[1]:.1%}"


def _relative(value: list[float] | None) -> str:
    return "" if value is None else f"{value[0]:+.1%} to {value[1]:+.1%}"


@experiments_app.command("list")
def list_command(as_json: JsonOpt = False) -> None:
    """Experiments in the rules and experiments that have letters."""
    from worker.experiments.report import list_experiments

    rows = list_experiments(session_factory(), _rules())
    if as_json:
        print_json(rows)
        return
    if not rows:
        out.print("no experiments: a rule runs one with `experiment:` (see the README)")
        return
    table = Table("experiment", "status", "arms", "letters", "first planned (UTC)")
    table.columns[0].no_wrap = True  # a name cut in two is hard to type back
    for r in rows:
        arms = ", ".join(r["arms"]) if r["arms"] else "-"
        table.add_row(
            plain(r["experiment"]),
            plain(r["status"]),
            plain(arms),
            str(r["letters"]),
            date_time(r["first_planned"]),
        )
    out.print(table)


@experiments_app.command("report")
def report_command(
    name: Annotated[str, typer.Argument(help="Experiment name.", show_default=False)],
    since: Annotated[
        str | None,
        typer.Option("--since", help="Only letters planned at or after this ISO time."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Per arm: planned, sent, held out, opened, clicked, converted, with 95% intervals;
    the lift of each variant over the holdout and over the first variant; a verdict."""
    from worker.experiments.report import UnknownExperiment, report

    start = parse_when(since, "--since") if since else None
    try:
        result = report(session_factory(), _rules(), name, datetime.now(UTC), start)
    except UnknownExperiment:
        fail(f"no experiment {name!r}: not in the rules and no letter names it")
    if as_json:
        print_json(result)
        return
    _print_report(result)


def _print_report(r: dict[str, Any]) -> None:
    say = out.print
    say(
        f"experiment {r['experiment']} ({r['status']}); conversion: {', '.join(r['convert_on'])} "
        f"within {r['window']} of the planned time",
        markup=False,
    )
    table = Table(
        "arm",
        "letter",
        "planned",
        "sent",
        "held",
        "opened",
        "clicked",
        "unsub",
        "converted",
        "conv. rate (95% CI)",
    )
    for column in table.columns[2:]:
        column.justify = "right"
    waiting = 0
    for a in r["arms"]:
        conversion = a["conversion"]
        table.add_row(
            plain(a["arm"]),
            plain(a["letter"] or "-"),
            f"{a['planned']:,}",
            f"{a['sent']:,}",
            f"{a['held_out']:,}",
            f"{a['opened']:,}",
            f"{a['clicked']:,}",
            f"{a['unsubscribed']:,}",
            f"{a['converted']:,}",
            f"{_percent(conversion['rate'])} ({_interval(conversion['interval'])})",
        )
        waiting += a["in_window"]
    say(table)
    if waiting:
        say(
            f"{waiting:,} letter(s) are still inside their window: their conversions may still come"
        )
    for c in r["comparisons"]:
        if c["absolute"] is None:
            say(f"{c['arm']} vs {c['baseline']}: no letters to compare", markup=False)
            continue
        relative = (
            f"; relative {c['relative']:+.1%} ({_relative(c['relative_interval'])})"
            if c["relative"] is not None
            else ""
        )
        needed = f"; needs {c['needed_per_arm']:,} per arm" if c["needed_per_arm"] else ""
        say(
            f"{c['arm']} vs {c['baseline']}: {c['absolute'] * 100:+.1f} points "
            f"(95% CI {_interval(c['absolute_interval'], True)}){relative}, "
            f"p = {c['p_value']:.3g} ({c['test']}){needed}",
            markup=False,
        )
    say(f"verdict: {r['verdict']}", markup=False)
