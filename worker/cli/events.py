"""`thankly event send` (post a signed event, as a CRM would) and `thankly events …`
(what arrived and what each rule decided)."""

from __future__ import annotations

import functools
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.table import Table

from worker.cli.common import (
    choice,
    date_time,
    err,
    fail,
    out,
    plain,
    print_json,
    session_factory,
    short_time,
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
events_app = typer.Typer(help="What arrived, and what each rule decided.", no_args_is_help=True)


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


JsonOpt = Annotated[bool, Opt("--json", help="Machine-readable output.")]


def _inbox_note(inbox: dict[str, int]) -> str | None:
    """Webhooks that arrived but are no event (yet): stored, waiting for the worker, or
    parked because they could not be ingested."""
    parts = [f"{inbox['pending']} waiting to be ingested"] if inbox["pending"] else []
    if inbox["failed"]:
        parts.append(f"{inbox['failed']} could not be ingested (the log says why)")
    return f"webhooks not in this list: {'; '.join(parts)}" if parts else None


@events_app.command("list")
def list_events(
    event_type: Annotated[
        str | None, Opt("--type", help="Only this event type.", show_default=False)
    ] = None,
    contact: Annotated[
        str | None, Opt("--contact", help="Only this contact email.", show_default=False)
    ] = None,
    since: Annotated[
        str | None, Opt("--since", help="Received at or after (ISO).", show_default=False)
    ] = None,
    limit: Annotated[int, Opt("--limit", help="Rows per page.")] = 20,
    page: Annotated[int, Opt("--page", help="Page number, from 1.")] = 1,
    as_json: JsonOpt = False,
) -> None:
    """Events as they arrived, newest first, with what the rules made of each."""
    from worker.admin.event_log import EventFilter
    from worker.admin.event_log import list_events as query
    from worker.cli.common import parse_when

    choice(event_type, EVENT_TYPES, "--type")
    if limit < 1 or page < 1:
        fail("--limit and --page start at 1", 2)
    flt = EventFilter(event_type, contact, parse_when(since, "--since") if since else None)
    found = query(session_factory(), flt, limit, page)
    if as_json:
        print_json(found.as_dict())
        return
    note = _inbox_note(found.inbox)
    if not found.rows:
        out.print("no events match" if found.total else "no events yet")
        if found.total:
            out.print(f"{found.total} event(s); page {page} is past the last ({found.pages})")
        if note:
            err.print(note, markup=False)
        return
    table = Table(
        "id",
        "received (UTC)",
        "source",
        "type",
        "contact",
        "outcome",
        box=None,
        collapse_padding=True,
        pad_edge=False,
    )
    for column in table.columns:
        column.overflow = "fold"  # an address cut short is no use to an admin
    for r in found.rows:
        table.add_row(
            str(r["id"]),
            short_time(r["received_at"]),
            plain(r["source"]),
            plain(r["type"]),
            plain(r["contact"]),
            plain(r["outcome"]),
        )
    out.print(table)
    out.print(f"{found.total} event(s), page {found.page} of {found.pages}")
    if note:
        err.print(note, markup=False)  # on stderr: about the pipeline, not a row of the list


def _decision_line(d: dict[str, Any]) -> str:
    """`deal-closed-thanks: suppressed: unsubscribed on … — letter #2, now suppressed, due …`"""
    line = f"{d['rule'] or '(address)'}: {d['outcome']}"
    if d["reason"]:
        line += f": {d['reason']}"
    if d["letter_id"]:
        line += f" — letter #{d['letter_id']}, now {d['letter_status'] or 'gone'}"
        if d["due_at"]:
            line += f", due {date_time(d['due_at'])} UTC"
    return line


@events_app.command("show")
def show_event(
    ref: Annotated[
        str, typer.Argument(help="Event number (#42) or webhook-id.", show_default=False)
    ],
    as_json: JsonOpt = False,
) -> None:
    """One event: who and what it was about, and what each rule that listened decided."""
    from worker.admin.event_log import event_story

    story = event_story(session_factory(), ref)
    if story is None:
        fail(f"no event {ref} (give its number, e.g. 42, or its webhook-id)")
    if as_json:
        print_json(story)
        return
    say = functools.partial(out.print, markup=False)
    say(f"event #{story['id']}  {story['type']}  from {story['source']}, id {story['external_id']}")
    say(f"  happened  {date_time(story['occurred_at'])} UTC")
    say(f"  received  {date_time(story['received_at'])} UTC")
    person = story["contact_details"]
    name = " ".join(x for x in (person.get("first_name"), person.get("last_name")) if x)
    extra = ", ".join(x for x in (name, person.get("locale"), person.get("timezone")) if x)
    say(f"  contact   {story['contact'] or '-'}" + (f" ({extra})" if extra else ""))
    if story["deal"]:
        deal = story["deal"]
        money = " ".join(str(deal[k]) for k in ("amount", "currency") if deal.get(k))
        bits = [deal.get("id") or "(no id)", deal.get("title"), money]
        say("  deal      " + ", ".join(str(b) for b in bits if b))
    for label, part, keys in (
        ("owner", story["owner"], ("name", "email")),
        ("feedback", story["feedback"], ("rating", "text")),
        ("referral", story["referral"], ("referred_name", "referred_company")),
    ):
        shown = [str(part[k]) for k in keys if part and part.get(k) not in (None, "")]
        if shown:
            say(f"  {label:<9} " + ", ".join(shown))
    if story["decisions"] is None:
        say("decisions: not recorded (this event was ingested before Thankly recorded them)")
        for x in story["letters"]:
            due = f", due {date_time(x['due_at'])} UTC" if x["due_at"] else ""
            say(f"  letter #{x['letter_id']} ({x['rule']}): {x['letter_status']}{due}")
        return
    if not story["decisions"]:
        say(f"decisions: none (no rule listens to {story['type']})")
        return
    say("decisions:")
    for d in story["decisions"]:
        say("  " + _decision_line(d))


@events_app.command("schema")
def events_schema() -> None:
    """Print the JSON Schema of the generic event (`make schema` writes docs/event.schema.json)."""
    from worker.event_schema import schema_text

    # Plain stdout, not the Rich console: the output is a file's content, byte for byte.
    typer.echo(schema_text(), nl=False)
