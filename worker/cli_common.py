"""What every `thankly` command shares: consoles, the one-line error exit, settings."""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console

from worker.settings import Settings, SettingsError, load_settings

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
