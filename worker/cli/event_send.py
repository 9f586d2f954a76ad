"""`thankly event send`: post a signed event to a running Thankly, as a CRM would."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import httpx
import typer

from worker.cli.common import (
    choice,
    err,
    fail,
    out,
)
from worker.cli.common import settings_or_exit as _settings
from worker.cli.event_builder import (
    DEFAULT_AMOUNT,
    DEFAULT_CURRENCY,
    EVENT_TYPES,
    EventOptions,
    OptionError,
    build_event,
)

event_app = typer.Typer(help="Send events to a running Thankly.", no_args_is_help=True)


def _read_file(file: Path) -> bytes:
    try:
        body = file.read_bytes()
    except OSError as exc:
        fail(f"cannot read {file}: {exc.strerror}", 2)
    try:
        json.loads(body)
    except ValueError as exc:
        fail(f"{file} is not valid JSON: {exc}", 2)
    return body


def _restamped(body: bytes, now: datetime) -> bytes:
    """The event with its timestamp set to now: a sample file stays a fresh event however
    old its own date is (older than defaults.max_event_age, it would plan nothing)."""
    document = json.loads(body)
    if not isinstance(document, dict):
        return body  # not an event object: the server will say what is wrong with it
    was = document.get("timestamp")
    document["timestamp"] = now.isoformat().replace("+00:00", "Z")
    err.print(f"event: timestamp set to now, {document['timestamp']} (was {was})", markup=False)
    return json.dumps(document, ensure_ascii=False).encode()


Opt = typer.Option  # keeps the option table below readable


@event_app.command("send")
def event_send(
    file: Annotated[
        Path | None, typer.Argument(help="Event JSON file (generic format).", show_default=False)
    ] = None,
    event_type: Annotated[
        str | None,
        Opt(
            "--type",
            help=f"Build an event of this type: {', '.join(EVENT_TYPES)}.",
            show_default=False,
        ),
    ] = None,
    email: Annotated[str | None, Opt("--email", help="Contact email.", show_default=False)] = None,
    name: Annotated[
        str | None, Opt("--name", help='Contact name, "First Last".', show_default=False)
    ] = None,
    locale: Annotated[
        str | None, Opt("--locale", help="Contact language, e.g. ru or de-AT.", show_default=False)
    ] = None,
    timezone: Annotated[
        str | None,
        Opt("--timezone", help="Contact time zone, e.g. Europe/Moscow.", show_default=False),
    ] = None,
    amount: Annotated[
        str | None,
        Opt(
            "--amount",
            help=f"deal.closed: deal amount \\[default: {DEFAULT_AMOUNT}]",
            show_default=False,
        ),
    ] = None,
    currency: Annotated[
        str | None,
        Opt(
            "--currency",
            help=f"deal.closed: ISO currency \\[default: {DEFAULT_CURRENCY}]",
            show_default=False,
        ),
    ] = None,
    deal: Annotated[
        str | None,
        Opt("--deal", help="Deal id \\[default for deal.closed: generated]", show_default=False),
    ] = None,
    owner_name: Annotated[
        str | None,
        Opt("--owner-name", help="Deal owner (the letter's signature).", show_default=False),
    ] = None,
    owner_email: Annotated[
        str | None, Opt("--owner-email", help="Deal owner's email (Reply-To).", show_default=False)
    ] = None,
    rating: Annotated[
        int | None, Opt("--rating", help="feedback.logged: rating 0-100.", show_default=False)
    ] = None,
    text: Annotated[
        str | None, Opt("--text", help="feedback.logged: the feedback text.", show_default=False)
    ] = None,
    referred_name: Annotated[
        str | None,
        Opt("--referred-name", help="referral.made: who was referred.", show_default=False),
    ] = None,
    url: Annotated[
        str | None,
        Opt(
            "--url",
            help="Webhook URL \\[default: THANKLY_PUBLIC_URL/webhooks/generic]",
            show_default=False,
        ),
    ] = None,
    now: Annotated[
        bool,
        Opt("--now", help="With FILE: send it as happening now (its timestamp set to now)."),
    ] = False,
    event_id: Annotated[
        str | None,
        Opt(
            "--id",
            help="webhook-id; reuse one to test redelivery \\[default: generated]",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Sign an event with the webhook secret and post it, as a CRM would: a FILE, or one
    built from --type, --email and the options below (what you leave out is filled in so
    the shipped rules plan a letter, and the command says what it built)."""
    from worker.intake.signatures import signed_headers
    from worker.secrets_store import MissingSecretError, webhook_secrets

    options = EventOptions(
        event_type or "",
        email or "",
        name=name,
        locale=locale,
        timezone=timezone,
        amount=amount,
        currency=currency,
        deal=deal,
        owner_name=owner_name,
        owner_email=owner_email,
        rating=rating,
        text=text,
        referred_name=referred_name,
    )
    if file is not None:
        if any(v not in (None, "") for v in vars(options).values()):
            fail("give either an event FILE or --type/--email and their options, not both", 2)
        body = _read_file(file)
        if now:
            body = _restamped(body, datetime.now(UTC))
    elif choice(event_type, EVENT_TYPES, "--type") is None or not email:
        fail("give an event FILE, or both --type and --email", 2)
    else:
        try:
            document, said = build_event(options, datetime.now(UTC))
        except OptionError as exc:
            fail(str(exc), 2)
        body = json.dumps(document, ensure_ascii=False).encode()
        # On stderr: stdout stays the one result line that scripts read.
        err.print(said, markup=False)

    settings = _settings(in_project=False)
    try:
        secret = webhook_secrets(settings)[0]
    except MissingSecretError as exc:
        fail(str(exc), 2)
    msg_id = event_id or f"evt_{uuid.uuid4().hex}"
    headers = signed_headers(secret, msg_id, int(datetime.now(UTC).timestamp()), body)
    headers["content-type"] = "application/json"
    target = url or f"{settings.public_url}/webhooks/generic"
    try:
        response = httpx.post(target, content=body, headers=headers, timeout=15)
    except httpx.HTTPError as exc:
        fail(f"cannot reach {target}: {exc} (is `thankly run` running?)")
    try:
        answer = response.json()
    except ValueError:
        answer = {"body": response.text[:500]}
    if response.status_code >= 300:
        detail = answer.get("error", answer)
        problems = answer.get("problems") or []
        lines = "".join(f"\n  {p['field']}: {p['message']}" for p in problems)
        fail(f"{response.status_code} from {target}: {detail}{lines}")
    out.print(f"{response.status_code} {answer.get('status')} {msg_id}", highlight=False)
