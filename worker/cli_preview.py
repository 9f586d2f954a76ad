"""`thankly preview`: render a letter without sending it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from worker.cli_common import err, fail, out, read_event_file
from worker.cli_common import settings_or_exit as _settings

templates_app = typer.Typer(help="Check the letters in templates/.", no_args_is_help=True)


def preview(
    letter: Annotated[str, typer.Argument(help="Letter name, e.g. deal_closed.")],
    locale: Annotated[str | None, typer.Option(help="Locale [default: the rules' default]")] = None,
    event: Annotated[
        Path | None, typer.Option("--event", help="Event JSON to fill the letter from.")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="text, html or eml.")] = "text",
) -> None:
    """Render a letter without sending it (HTML goes to a file you can open)."""
    from worker.catalogue import Catalogue
    from worker.letters import Renderer, RenderError
    from worker.preview import preview as render_preview
    from worker.rules import RulesError, RulesStore

    if fmt not in {"text", "html", "eml"}:
        fail("--format must be text, html or eml", 2)
    settings = _settings()
    catalogue = Catalogue.scan(settings.templates_dir)
    if not catalogue.has(letter):
        fail(
            f"no letter {letter!r} in {settings.templates_dir}; "
            f"known: {', '.join(sorted(catalogue.letters)) or 'none'}",
            2,
        )
    try:
        defaults = RulesStore(settings.rules_file, settings.templates_dir).get().defaults
        default_locale, default_zone = defaults.locale, defaults.timezone
    except RulesError:
        default_locale, default_zone = "en", "UTC"
    wanted = locale or default_locale
    chosen = catalogue.resolve_locale(letter, wanted, default_locale)
    if locale and chosen != locale.lower():
        err.print(f"note: no {letter} in {locale!r}; showing {chosen!r}")
    parsed = read_event_file(event) if event is not None else None
    try:
        rendered, message = render_preview(
            settings, Renderer(settings.templates_dir), letter, chosen, parsed, default_zone
        )
    except RenderError as exc:
        fail(f"cannot render: {exc}")
    if fmt == "text":
        out.print(f"Subject: {rendered.subject}\n\n{rendered.text}", markup=False)
    elif fmt == "eml":
        sys.stdout.write(message.as_string())
    else:
        target = settings.var_dir / "preview" / f"{letter}.{chosen}.html"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(rendered.html, encoding="utf-8")
        out.print(f"wrote {target.resolve()} (open it in a browser)")
