"""`thankly preview`, `thankly letters preview` and `thankly templates check`: look at
letters before anyone receives them."""

from __future__ import annotations

import sys
from email.message import EmailMessage
from pathlib import Path
from typing import Annotated

import typer

from worker.cli.common import choice, err, fail, out, read_event_file
from worker.cli.common import settings_or_exit as _settings
from worker.settings import Settings

templates_app = typer.Typer(help="Check the letters in templates/.", no_args_is_help=True)
FORMATS = ("text", "html", "eml")
FormatOpt = Annotated[str, typer.Option("--format", help="text, html or eml.")]
# Shown in `letters preview --format text`, in this order: what the recipient's mail
# program and the unsubscribe machinery see.
HEADERS = ("From", "To", "Reply-To", "Subject", "Message-ID", "List-Unsubscribe")
# Opening a stored letter's HTML in a browser must not load its open pixel (that would
# record an open of a real letter): images are blocked, the markup is left as sent.
NO_IMAGES = '<meta http-equiv="Content-Security-Policy" content="img-src data:">'


def _check_format(fmt: str) -> None:
    choice(fmt, FORMATS, "--format")


def _write_html(settings: Settings, name: str, html: str) -> None:
    from worker.secrets_store import private_dir, private_file

    target = settings.var_dir / "preview" / f"{name}.html"
    # A preview of a stored letter is a real recipient's letter: as private as the database.
    private_dir(settings.var_dir)
    private_dir(target.parent)
    with open(private_file(target), "w", encoding="utf-8") as handle:
        handle.write(html)
    out.print(f"wrote {target.resolve()} (open it in a browser)", markup=False)


def preview(
    letter: Annotated[str, typer.Argument(help="Letter name, e.g. deal_closed.")],
    locale: Annotated[
        str | None,
        typer.Option(help="Locale [default: the event's contact locale, else the rules' default]"),
    ] = None,
    event: Annotated[
        Path | None, typer.Option("--event", help="Event JSON to fill the letter from.")
    ] = None,
    fmt: FormatOpt = "text",
) -> None:
    """Render a letter without sending it (HTML goes to a file you can open)."""
    from worker.letters.catalogue import Catalogue
    from worker.letters.preview import choose, example_event
    from worker.letters.preview import preview as render_preview
    from worker.letters.render import Renderer, RenderError

    _check_format(fmt)
    settings = _settings()
    catalogue = Catalogue.scan(settings.templates_dir)
    if not catalogue.has(letter):
        fail(
            f"no letter {letter!r} in {settings.templates_dir}; "
            f"known: {', '.join(sorted(catalogue.letters)) or 'none'}",
            2,
        )
    parsed = read_event_file(event) if event is not None else example_event()
    choice = choose(settings, letter, parsed, locale)
    for note in choice.notes:
        err.print(f"note: {note}", markup=False)
    try:
        rendered, message = render_preview(
            settings, Renderer(settings.templates_dir), letter, parsed, choice
        )
    except RenderError as exc:
        fail(f"cannot render: {exc}")
    if fmt == "text":
        out.print(f"Subject: {rendered.subject}\n\n{rendered.text}", markup=False)
    elif fmt == "eml":
        sys.stdout.write(message.as_string())
    else:
        _write_html(settings, f"{letter}.{choice.locale}", rendered.html)


def _part(message: EmailMessage, subtype: str) -> str:
    part = message.get_body((subtype,))
    return str(part.get_content()) if isinstance(part, EmailMessage) else ""


def letter_preview(letter_id: int, fmt: str) -> None:
    """Body of `thankly letters preview ID`: a stored letter exactly as it will be sent."""
    from sqlalchemy.exc import SQLAlchemyError

    from worker.letters.preview import stored_letter
    from worker.letters.render import RenderError
    from worker.planning.rules import RulesError
    from worker.secrets_store import MissingSecretError, secret_key

    _check_format(fmt)
    settings = _settings()
    try:
        shown = stored_letter(settings, lambda: secret_key(settings), letter_id)
    except MissingSecretError as exc:
        fail(f"{exc} (the letter's links are signed with it)", 2)
    except SQLAlchemyError as exc:
        fail(f"cannot read letters ({type(exc).__name__}); has `thankly db upgrade` run?")
    except RenderError as exc:
        fail(f"letter #{letter_id} cannot be rendered (sending it would fail): {exc}")
    except RulesError as exc:
        fail(f"{exc.path} has {len(exc.problems)} problem(s); run `thankly rules check`")
    if shown is None:
        fail(f"no letter #{letter_id}")
    letter = shown.letter
    if letter.status not in ("scheduled", "queued"):
        reason = f" ({letter.status_reason})" if letter.status_reason else ""
        err.print(
            f"note: letter #{letter_id} is {letter.status}{reason}; this is what a replay "
            "would send",
            markup=False,
        )
    if shown.reused:
        err.print("note: the rendering stored for a --reuse-rendered replay", markup=False)
    message = shown.message
    if fmt == "eml":
        sys.stdout.write(message.as_string())
    elif fmt == "html":
        html = _part(message, "html")
        _write_html(
            settings, f"letter-{letter_id}", html.replace("<head>", f"<head>{NO_IMAGES}", 1)
        )
    else:
        head = "\n".join(f"{name}: {message[name]}" for name in HEADERS if message[name])
        out.print(f"{head}\n\n{_part(message, 'plain')}", markup=False)


def templates_report(settings: Settings, default_timezone: str | None = None) -> bool:
    """Print every template problem and a summary; True when there are none.
    `default_timezone`: for contacts without one [default: the rules in force]."""
    from worker.letters.brand import BrandError, BrandStore
    from worker.letters.preview import rules_or_defaults
    from worker.letters.template_check import check_templates

    rules = rules_or_defaults(settings)[0]
    try:
        brand = BrandStore(settings.brand_file).get()
    except BrandError as exc:
        err.print(f"error: {exc}", markup=False)
        return False
    report = check_templates(
        settings.templates_dir,
        default_timezone=default_timezone,
        rules=rules,
        brand=brand,
        settings=settings,
    )
    if not report.letters:
        # "no problems" with nothing checked would hide a wrong THANKLY_TEMPLATES_DIR.
        err.print(
            f"error: no letters in {settings.templates_dir} "
            "(a letter is <letter>/<locale>/ with subject.txt, body.txt and body.html)",
            markup=False,
        )
        return False
    if not report.examples_found:
        err.print(
            f"note: no example events in {report.examples}; checked with the minimal event only",
            markup=False,
        )
    for problem in report.problems:
        out.print(str(problem), markup=False)
    out.print(report.summary, markup=False)
    return not report.problems


@templates_app.command("check")
def check() -> None:
    """Render every letter in every locale with every example event (examples/events/)
    and a minimal one; report file:line for each problem."""
    if not templates_report(_settings()):
        raise typer.Exit(1)
