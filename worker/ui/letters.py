"""Letters: the list with its filters, a letter's page, what it says (in a sandboxed
frame), and the actions: replay, cancel, send now, one letter or all in a filter.

An action is never one blind click. A letter's page shows what its action would do (the
same dry run the CLI's --dry-run gives) beside a form that asks for a reason; a bulk action
goes through a page that counts the letters first. Each then runs the same function as
`thankly letters …` and `/admin` (worker/admin/operations.py): the same refusals, pacing
and audit rows, with the dashboard viewer as the actor.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from html import escape
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from worker.admin import find, operations
from worker.admin.timeline import letter_timeline
from worker.http.admin import rules_in_force
from worker.models import Letter, LetterStatus
from worker.runtime import Runtime
from worker.ui.access import Viewer, check_form, viewer
from worker.ui.pages import page, runtime_of, viewer_zone

router = APIRouter()
PAGE_SIZE = 50
BIGINT_MAX = 2**63 - 1
ACTIONS = ("replay", "cancel", "send-now")
PAST = {
    "replay": "Replayed",
    "cancel": "Cancelled",
    "send-now": "Sent now (at the window's opening)",
}
Reason = Annotated[str, Form(min_length=1, max_length=2000)]
Csrf = Annotated[str, Form(max_length=512)]


def _day(value: str | None, request: Request, end: bool = False) -> datetime | None:
    """A date from the filter form (YYYY-MM-DD, the viewer's day), as UTC."""
    if not value:
        return None
    try:
        day = datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=viewer_zone(request))
    except ValueError:
        raise HTTPException(422, f"{value!r} is not a date (YYYY-MM-DD)") from None
    moment = datetime.combine(day.date(), time(), day.tzinfo)
    return (moment + timedelta(days=1) if end else moment).astimezone(UTC)


def letter_filter(request: Request, params: dict[str, str], **extra: Any) -> find.LetterFilter:
    status = params.get("status") or None
    if status is not None and status not in find.STATUSES:
        raise HTTPException(422, f"status {status!r} is not one of {', '.join(find.STATUSES)}")
    return find.LetterFilter(
        status=status,
        letter=params.get("letter") or None,
        locale=params.get("locale") or None,
        contact=params.get("contact") or None,
        since=_day(params.get("since"), request),
        until=_day(params.get("until"), request, end=True),
        **extra,
    )


FILTER_KEYS = ("status", "letter", "locale", "contact", "since", "until")


def _filters(request: Request) -> dict[str, str]:
    return {k: request.query_params.get(k, "")[:320] for k in FILTER_KEYS}


@router.get("/letters", response_class=HTMLResponse)
def list_letters(
    request: Request,
    page_number: Annotated[int, Query(alias="page", ge=1, le=100_000)] = 1,
    done: str = "",
    n: Annotated[int, Query(ge=0)] = 0,
) -> Response:
    who = viewer(request)
    params = _filters(request)
    flt = letter_filter(
        request, params, limit=PAGE_SIZE, offset=(page_number - 1) * PAGE_SIZE, newest_first=True
    )
    factory = runtime_of(request).session_factory
    rows = find.find_letters(factory, flt)
    total = find.count_letters(factory, flt)
    pages = max(1, -(-total // PAGE_SIZE))
    chosen = {k: v for k, v in params.items() if v}
    return page(
        request,
        "letters.html",
        who,
        letters=rows,
        total=total,
        page_number=page_number,
        pages=pages,
        filters=params,
        statuses=find.STATUSES,
        query_for=lambda n: urlencode(chosen | {"page": n}),
        filter_query=urlencode(chosen),
        bulk=_bulk_actions(params.get("status")),
        done=done if done in ACTIONS else "",
        done_text=f"{PAST.get(done, '')} {n} letter(s).",
    )


def _bulk_actions(status: str | None) -> list[str]:
    """What may be done to every letter of a filter: replay failed (or unknown) letters,
    cancel or send pending ones."""
    if status in (LetterStatus.FAILED, LetterStatus.UNKNOWN):
        return ["replay"]
    if status == LetterStatus.SCHEDULED:
        return ["cancel", "send-now"]
    if status == LetterStatus.QUEUED:
        return ["cancel"]
    return []


LetterId = Annotated[int, Path(ge=1, le=BIGINT_MAX)]


@router.get("/letters/{letter_id}", response_class=HTMLResponse)
def show_letter(request: Request, letter_id: LetterId, done: str = "", n: int = 0) -> Response:
    who = viewer(request)
    runtime = runtime_of(request)
    story = letter_timeline(runtime.session_factory, letter_id)
    if story is None:
        raise HTTPException(404, f"no letter #{letter_id}")
    ids = find.LetterFilter(ids=[letter_id])
    return page(
        request,
        "letter.html",
        who,
        letter=story,
        previews={action: _dry_run(runtime, action, ids, force=False) for action in ACTIONS},
        forced=_dry_run(runtime, "replay", ids, force=True),
        done=done if done in ACTIONS else "",
        n=n,
    )


@router.get("/letters/{letter_id}/rendered")
def rendered_letter(request: Request, letter_id: LetterId) -> Response:
    """The letter's HTML for the frame on its page: what was last rendered, else what the
    templates make of it now. Served with a sandbox policy: no script, no form, no request
    anywhere (images from outside are not loaded, so viewing it is no open)."""
    viewer(request)
    from worker.letters.preview import stored_letter
    from worker.letters.render import RenderError

    runtime = runtime_of(request)
    with runtime.session_factory() as session:
        letter = session.get(Letter, letter_id)
        stored = (letter.rendered or {}).get("html") if letter else None
    if letter is None:
        raise HTTPException(404, f"no letter #{letter_id}")
    html = stored
    if html is None:
        try:
            preview = stored_letter(
                runtime.settings, lambda: request.app.state.secret_key, letter_id
            )
        except RenderError as exc:
            html = f"<p>This letter cannot be rendered: {escape(str(exc))}</p>"
        else:
            html = preview.rendered.html if preview is not None else "<p>gone</p>"
    return HTMLResponse(
        html,
        headers={
            "Content-Security-Policy": "sandbox; default-src 'none'; style-src 'unsafe-inline'; "
            "img-src data:; frame-ancestors 'self'",
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-store",
            "Referrer-Policy": "no-referrer",
        },
    )


# --- actions ---------------------------------------------------------------------------


def _dry_run(
    runtime: Runtime, action: str, flt: find.LetterFilter, force: bool
) -> operations.Outcome:
    return _run(runtime, action, flt, None, force=force, dry_run=True, actor="dashboard")


def _run(
    runtime: Runtime,
    action: str,
    flt: find.LetterFilter,
    reason: str | None,
    *,
    force: bool,
    dry_run: bool,
    actor: str,
) -> operations.Outcome:
    factory, now = runtime.session_factory, runtime.clock.now()
    if action == "replay":
        return operations.replay(
            factory,
            flt,
            now,
            actor=actor,
            reason=reason,
            rate_per_second=runtime.settings.replay_rate_per_second,
            force=force,
            dry_run=dry_run,
        )
    ids = [x.id for x in find.find_letters(factory, flt)]
    if action == "cancel":
        return operations.cancel(factory, ids, now, actor=actor, reason=reason, dry_run=dry_run)
    defaults = rules_in_force(runtime).defaults
    return operations.send_now(
        factory,
        ids,
        now,
        actor=actor,
        reason=reason,
        window=defaults.send_window,
        default_timezone=defaults.timezone,
        dry_run=dry_run,
    )


@router.post("/letters/{letter_id}/{action}")
def act_on_letter(
    request: Request,
    letter_id: LetterId,
    action: str,
    csrf: Csrf,
    reason: Reason,
    force: Annotated[bool, Form()] = False,
) -> Response:
    who = _acting(request, action, csrf)
    outcome = _run(
        runtime_of(request),
        action,
        find.LetterFilter(ids=[letter_id]),
        reason.strip(),
        force=force,
        dry_run=False,
        actor=who.actor,
    )
    if not outcome.done:
        raise HTTPException(409, f"not done: {outcome.refused.get(letter_id, 'no such letter')}")
    return RedirectResponse(
        f"/ui/letters/{letter_id}?{urlencode({'done': action, 'n': 1})}", status_code=303
    )


def _acting(request: Request, action: str, csrf: str) -> Viewer:
    who = viewer(request)
    if action not in ACTIONS:
        raise HTTPException(404, f"no action {action!r}")
    check_form(request, who, csrf)
    return who


@router.get("/bulk/{action}", response_class=HTMLResponse)
def confirm_bulk(request: Request, action: str, force: bool = False) -> Response:
    """Every letter of a filter: first how many it would change and why not the rest."""
    who = viewer(request)
    if action not in ACTIONS:
        raise HTTPException(404, f"no action {action!r}")
    params = _filters(request)
    outcome = _run(
        runtime_of(request),
        action,
        letter_filter(request, params),
        None,
        force=force,
        dry_run=True,
        actor=who.actor,
    )
    return page(
        request,
        "bulk.html",
        who,
        action=action,
        outcome=outcome,
        filters=params,
        force=force,
        unknown_refused=any(
            why == operations.REFUSAL[LetterStatus.UNKNOWN] for why in outcome.refused.values()
        ),
        back=f"/ui/letters?{urlencode({k: v for k, v in params.items() if v})}",
    )


@router.post("/bulk/{action}")
def run_bulk(
    request: Request,
    action: str,
    csrf: Csrf,
    reason: Reason,
    expected: Annotated[int, Form(ge=0)],
    force: Annotated[bool, Form()] = False,
    status: Annotated[str, Form(max_length=32)] = "",
    letter: Annotated[str, Form(max_length=128)] = "",
    locale: Annotated[str, Form(max_length=35)] = "",
    contact: Annotated[str, Form(max_length=320)] = "",
    since: Annotated[str, Form(max_length=10)] = "",
    until: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    who = _acting(request, action, csrf)
    params = {
        "status": status,
        "letter": letter,
        "locale": locale,
        "contact": contact,
        "since": since,
        "until": until,
    }
    runtime = runtime_of(request)
    flt = letter_filter(request, params)
    counted = _run(runtime, action, flt, None, force=force, dry_run=True, actor=who.actor)
    if len(counted.done) != expected:
        # The letters changed since the count was shown: show the new count, do nothing.
        query = urlencode({k: v for k, v in params.items() if v} | ({"force": 1} if force else {}))
        return RedirectResponse(f"/ui/bulk/{action}?{query}", status_code=303)
    outcome = _run(
        runtime, action, flt, reason.strip(), force=force, dry_run=False, actor=who.actor
    )
    query = urlencode(
        {k: v for k, v in params.items() if v} | {"done": action, "n": len(outcome.done)}
    )
    return RedirectResponse(f"/ui/letters?{query}", status_code=303)
