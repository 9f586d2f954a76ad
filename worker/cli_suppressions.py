"""`thankly suppressions …`: who gets no letters, and lifting that, audited."""

from __future__ import annotations

import typer

suppressions_app = typer.Typer(
    help="Addresses that get no letters: list, add, remove.", no_args_is_help=True
)
