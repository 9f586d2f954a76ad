"""The `thankly` command."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from worker.cli import letter_actions  # noqa: F401 - registers replay, cancel, send-now
from worker.cli.common import fail, out
from worker.cli.common import settings_or_exit as _settings
from worker.cli.crm import crm_app
from worker.cli.event_send import event_app
from worker.cli.events import events_app
from worker.cli.experiments import experiments_app
from worker.cli.letters import letters_app
from worker.cli.preview import preview, templates_app
from worker.cli.rules import rules_app
from worker.cli.serve import api, run, scheduler, worker
from worker.cli.stats import stats_command
from worker.cli.suppressions import suppressions_app
from worker.settings import redact_url

if TYPE_CHECKING:
    pass

app = typer.Typer(
    help="Thankly: CRM events in, well-timed personal thank-you letters out.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Sub-commands inherit these from the root context.
    context_settings={"help_option_names": ["-h", "--help"], "show_default": True},
)


def _print_version(wanted: bool) -> None:
    if wanted:
        from importlib.metadata import version

        out.print(f"thankly {version('thankly')}", markup=False)
        raise typer.Exit


@app.callback()
def _root(
    _version: Annotated[
        bool,
        typer.Option(
            "--version", is_eager=True, callback=_print_version, help="Print the version."
        ),
    ] = False,
) -> None:
    """Thankly: CRM events in, well-timed personal thank-you letters out."""


db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(event_app, name="event")
app.add_typer(events_app, name="events")
app.add_typer(rules_app, name="rules")
app.add_typer(letters_app, name="letters")
app.add_typer(crm_app, name="crm")
app.add_typer(templates_app, name="templates")
app.add_typer(suppressions_app, name="suppressions")
app.add_typer(experiments_app, name="experiments")
app.command("stats")(stats_command)
app.command("preview")(preview)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the database schema to the newest version."""
    from worker.migrate import upgrade

    settings = _settings()
    url = settings.effective_database_url
    try:
        done = upgrade(url)
    except Exception as exc:
        fail(f"migration failed on {redact_url(url)}: {type(exc).__name__}: {exc}")
    out.print(done.describe(redact_url(url)), highlight=False, soft_wrap=True)


for command in (run, api, worker, scheduler):
    app.command()(command)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
