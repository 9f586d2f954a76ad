"""What every `thankly` command shares: consoles, the one-line error exit, settings."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import typer
import typer.core
from rich.console import Console
from rich.markup import escape
from rich.text import Text

from worker.settings import Settings, SettingsError, load_settings, misspelt_variables

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from worker.events import GenericEvent

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def print_json(value: Any) -> None:
    """`--json` output: indented, non-ASCII as itself (names in Cyrillic stay readable)."""
    out.print(json.dumps(value, ensure_ascii=False, indent=2), markup=False)


def fail(message: str, code: int = 1) -> NoReturn:
    """Errors go to stderr with a non-zero exit; 2 means the command was used wrongly."""
    # Messages quote stored and typed values: `[/]` in them is text, not Rich markup.
    err.print(f"[bold red]error:[/] {escape(message)}")
    raise typer.Exit(code)


_warned = False
# Settings that move every file a command reads or writes away from the current folder.
LOCATIONS = ("var_dir", "database_url", "rules_file", "templates_dir")


def settings_or_exit(*, in_project: bool = True) -> Settings:
    """The settings, after warning once about misspelt variables; or exit 2 on one line.
    `in_project=False` for commands that read no project file (`event send` posts to
    another machine's Thankly with THANKLY_WEBHOOK_SECRETS from anywhere)."""
    global _warned
    if not _warned:
        _warned = True
        for warning in misspelt_variables(os.environ):
            err.print(f"[yellow]warning:[/] {warning}", markup=True)
    try:
        settings = load_settings()
    except SettingsError as exc:
        fail(str(exc), 2)
    if in_project:
        _require_project(settings)
    return settings


def _require_project(settings: Settings) -> None:
    """On the embedded defaults every path is relative to the current folder: run from
    anywhere else, a command would plan nothing and leave a stray var/thankly.db behind."""
    if settings.model_fields_set & set(LOCATIONS):
        return
    if settings.rules_file.exists() or settings.templates_dir.exists():
        return
    fail(
        f"no Thankly project here: looked for {settings.rules_file} and "
        f"{settings.templates_dir}/ in {Path.cwd()}; run thankly from the project folder, "
        "or set THANKLY_RULES_FILE, THANKLY_TEMPLATES_DIR and THANKLY_VAR_DIR",
        2,
    )


def choice(value: str | None, valid: Sequence[str], option: str) -> str | None:
    """An enumerated option's value, or exit 2 listing the valid ones."""
    if value is None or value in valid:
        return value
    fail(f"{option} {value!r} is not one of: {', '.join(valid)}", 2)


# Python annotations as Click used to name them in help.
_TYPE_WORDS = {"str": "TEXT", "int": "INTEGER", "float": "NUMBER", "datetime": "DATETIME"}


def _help_type(self: typer.core.TyperOption | typer.core.TyperArgument, ctx: Any) -> str | None:
    """What help shows after a parameter: nothing for a flag, else a plain word.

    Typer 0.29 prints the Python annotation in angle brackets for every parameter
    (`--json <bool>`, `--status <str>`), which reads as if a flag took a value."""
    if getattr(self, "is_flag", False):
        return None
    if self.metavar is not None:
        return self.metavar
    label = self.display_type(ctx).removeprefix("<").removesuffix(">")
    if label.startswith("list[") and label.endswith("]"):
        label = label[5:-1]
    shown = _TYPE_WORDS.get(label, label if "|" in label else label.upper())
    return f"{shown}..." if self.nargs != 1 else shown


typer.core.TyperOption.display_type_rich = _help_type  # type: ignore[method-assign]
typer.core.TyperArgument.display_type_rich = _help_type  # type: ignore[method-assign,assignment]


def read_event_file(path: Path) -> GenericEvent:
    """An event file in the generic format, or exit 2 saying what is wrong with it."""
    from worker.events import InvalidEvent, parse_event_json

    try:
        return parse_event_json(path.read_bytes())
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}", 2)
    except InvalidEvent as exc:
        fail(f"{path} is not a valid event: {exc}", 2)
    except ValueError as exc:
        fail(f"{path} is not valid JSON: {exc}", 2)


def parse_when(text: str, option: str) -> datetime:
    """An ISO date-time with a zone (a bare date means midnight UTC), or exit 2."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        fail(f"{option} {text!r} is not an ISO date-time such as 2026-11-20T17:30:00Z", 2)
    if moment.tzinfo is None:
        if len(text) == 10:  # a date alone
            return moment.replace(tzinfo=UTC)
        fail(f"{option} needs a time zone, e.g. 2026-11-20T17:30:00Z or …+01:00", 2)
    return moment


def short_time(iso: str | None, *, seconds: bool = False) -> str:
    """`2026-11-23T09:00:00+00:00` → `11-23 09:00` in UTC: tables fit 80 columns and say
    "UTC" once in a header instead of in every cell."""
    if not iso:
        return ""
    moment = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return moment.strftime("%m-%d %H:%M:%S" if seconds else "%m-%d %H:%M")


def date_time(iso: str | None) -> str:
    """`2026-11-20T10:05:00+00:00` → `2026-11-20 10:05` (UTC), for listings that need the
    year: a suppression or a replayed CRM export can be old."""
    if not iso:
        return ""
    moment = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M")


def session_factory() -> sessionmaker[Session]:
    """A session factory on the configured database, for commands that read or change it."""
    from worker.db import make_engine, make_session_factory

    return make_session_factory(make_engine(settings_or_exit().effective_database_url))


def plain(value: object) -> Text:
    """A table cell that shows a stored value as it is: Rich would read `[/]` in a bare
    string as markup (and crash), and `[link=…]` would plant a hyperlink in a terminal."""
    return Text("" if value is None else str(value))


def cli_actor() -> str:
    """Who acted, for the audit log: the account of the process's real uid. LOGNAME and
    USER (which getpass trusts first) are one `export` away from naming someone else."""
    import pwd

    uid = os.getuid()
    try:
        return f"{pwd.getpwuid(uid).pw_name} (cli)"
    except KeyError:  # a uid with no passwd entry, as in some containers
        return f"uid {uid} (cli)"
