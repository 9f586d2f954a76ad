"""What every `thankly` command shares: consoles, the one-line error exit, settings."""

from __future__ import annotations

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
