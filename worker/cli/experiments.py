"""`thankly experiments …`: which experiments run, and what each arm's letters did."""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.table import Table

from worker.cli.common import date_time, fail, out, parse_when, plain, print_json, session_factory
from worker.cli.common import settings_or_exit as _settings
from worker.cli.letters import compact_table
from worker.planning.rules_model import RuleSet

experiments_app = typer.Typer(
    help="A/B tests of letters against a holdout: list them, report their lift.",
    no_args_is_help=True,
)
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def _rules() -> RuleSet:
    from worker.cli.rules import rules_or_exit

    return rules_or_exit(_settings())


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _interval(value: list[float] | None, points: bool = False) -> str:
    if value is None:
        return ""
    if points:
        return f"{value[0] * 100:+.1f} to {value[1] * 100:+.1f}"
    return f"{value[0]:.1%}-{value[1]:.1%}"


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


def _p(value: float) -> str:
    return "p < 0.001" if value < 0.001 else f"p = {value:.3f}"


def _print_report(r: dict[str, Any]) -> None:
    say = functools.partial(out.print, markup=False)
    say(
        f"experiment {r['experiment']} ({r['status']}); converted: {', '.join(r['convert_on'])} "
        f"within {r['window']} of the planned time"
    )
    # Ten short columns fit 80: the letter of each arm and every rate are in --json.
    table = compact_table(
        "arm", "planned", "sent", "held", "opened", "clicked", "unsub", "conv", "rate", "95% CI"
    )
    for column in table.columns[1:]:
        column.justify = "right"
    waiting = 0
    for a in r["arms"]:
        conversion = a["conversion"]
        table.add_row(
            plain(a["arm"]),
            *(f"{a[key]:,}" for key in ("planned", "sent", "held_out", "opened", "clicked")),
            f"{a['unsubscribed']:,}",
            f"{a['converted']:,}",
            _percent(conversion["rate"]),
            _interval(conversion["interval"]),
        )
        waiting += a["in_window"]
    out.print(table)
    if waiting:
        say(f"{waiting:,} letter(s) still inside their window: conversions may still come")
    if r["status"].startswith("closed"):
        say(r["verdict"].split(". ")[0] + ".")
    for c in r["comparisons"]:
        say(f"{c['arm']} vs {c['baseline']}:")
        if c["absolute"] is not None:
            say(
                f"  {c['absolute'] * 100:+.1f} points (95% CI "
                f"{_interval(c['absolute_interval'], True)}); {_p(c['p_value'])} ({c['test']})"
            )
        if c["relative"] is not None:
            say(f"  relative {c['relative']:+.1%} (95% CI {_relative(c['relative_interval'])})")
        if c["needed_per_arm"]:
            say(f"  sized for a {r['min_effect']:.0%} lift: {c['needed_per_arm']:,} letters an arm")
        say(f"  {c['verdict']}")
