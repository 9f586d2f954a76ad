"""Events: what arrived from which source, newest first, and an event's page with what each
rule listening to it decided (the queries behind `thankly events list/show`,
worker/admin/event_log.py), linking the letters it planned, cancelled or held.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, get_args
from urllib.parse import urlencode

from fastapi import APIRouter, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import Select

from worker.admin.event_log import EventFilter, event_story, list_events
from worker.events import EventType
from worker.intake import sources
from worker.models import Event
from worker.ui.access import viewer
from worker.ui.pages import page, runtime_of

router = APIRouter()
PAGE_SIZE = 50
BIGINT_MAX = 2**63 - 1
EVENT_TYPES: tuple[str, ...] = get_args(EventType)
FILTER_KEYS = ("type", "contact", "source")


@dataclass(frozen=True)
class SourceFilter(EventFilter):
    """The CLI's filter, and the source the webhook came through."""

    source: str | None = None

    def apply(self, query: Select[Any]) -> Select[Any]:
        query = super().apply(query)
        return query.where(Event.source == self.source) if self.source else query


def _filters(request: Request) -> dict[str, str]:
    return {k: request.query_params.get(k, "")[:320].strip() for k in FILTER_KEYS}


@router.get("/events", response_class=HTMLResponse)
def events_list(
    request: Request,
    page_number: Annotated[int, Query(alias="page", ge=1, le=100_000)] = 1,
) -> Response:
    who = viewer(request)
    params = _filters(request)
    if params["type"] and params["type"] not in EVENT_TYPES:
        raise HTTPException(422, f"type {params['type']!r} is not one of {', '.join(EVENT_TYPES)}")
    flt = SourceFilter(
        event_type=params["type"] or None,
        contact=params["contact"] or None,
        source=params["source"] or None,
    )
    found = list_events(runtime_of(request).session_factory, flt, PAGE_SIZE, page_number)
    chosen = {k: v for k, v in params.items() if v}
    known = sources.registered()
    return page(
        request,
        "events.html",
        who,
        found=found,
        filters=params,
        types=EVENT_TYPES,
        # A source no longer registered still has its events.
        sources=[*known, params["source"]] if params["source"] not in [*known, ""] else known,
        query_for=lambda n: urlencode(chosen | {"page": n}),
    )


EventId = Annotated[int, Path(ge=1, le=BIGINT_MAX)]


@router.get("/events/{event_id}", response_class=HTMLResponse)
def show_event(request: Request, event_id: EventId) -> Response:
    who = viewer(request)
    story = event_story(runtime_of(request).session_factory, str(event_id))
    # event_story also finds a webhook-id; a number in this path is only ever Thankly's.
    if story is None or story["id"] != event_id:
        raise HTTPException(404, f"no event #{event_id}")
    return page(request, "event.html", who, event=story, contact_name=_name(story))


def _name(story: dict[str, Any]) -> str:
    person = story["contact_details"]
    return " ".join(str(x) for x in (person.get("first_name"), person.get("last_name")) if x)
