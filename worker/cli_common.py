"""What every `thankly` command shares: consoles, the one-line error exit, settings."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import typer
from rich.console import Console

from worker.settings import Settings, SettingsError, load_settings

if TYPE_CHECKING:
    from worker.events import GenericEvent

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def fail(message: str, code: int = 1) -> NoReturn:
    """Errors go to stderr with a non-zero exit; 2 means the command was used wrongly."""
    err.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


def settings_or_exit() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        fail(str(exc), 2)


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
