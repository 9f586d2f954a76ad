"""`thankly events list/show/schema`: what arrived, and what each rule decided.

Posting an event as a CRM would is `thankly event send` (event_send.py)."""

from __future__ import annotations

import functools
from typing import Annotated, Any

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
from worker.cli.event_builder import (
    EVENT_TYPES,
)

events_app = typer.Typer(help="What arrived, and what each rule decided.", no_args_is_help=True)


Opt = typer.Option  # keeps the option tables readable
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
