"""Rules: the rules in force, read-only (defaults, each rule in the words `thankly rules
check` uses, experiments), and "explain this event": a pasted generic event judged by
those rules as `thankly rules explain` judges it (worker/planning/explain.py), which rule
and letter, in which locale, due when, in which arm, or why nothing is sent.

Explaining changes nothing, so a read-only viewer may use it; the form still carries the
CSRF token and must come from this site. The event is read from the request body with a
cap (MAX_EVENT) before anything parses it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from worker.events import InvalidEvent, validate_event
from worker.experiments.assignment import stored_arm
from worker.http.admin import rules_in_force
from worker.planning.describe import cap_text, describe, send_window_text
from worker.planning.durations import format_duration
from worker.planning.explain import explain
from worker.planning.rules_model import RuleSet
from worker.runtime import Runtime
from worker.ui.access import Viewer, check_form, viewer
from worker.ui.pages import Formats, format_locale, page, runtime_of, viewer_zone

router = APIRouter()
MAX_EVENT = 64 * 1024  # characters of pasted JSON; a CRM event is a few hundred
# The form arrives URL-encoded: each byte of JSON may take three.
MAX_BODY = 3 * 4 * MAX_EVENT + 4096


class Problem(Exception):
    """Why the pasted event cannot be explained: a message and, for an invalid event, the
    fields at fault."""

    def __init__(self, message: str, details: list[str] | None = None) -> None:
        super().__init__(message)
        self.message, self.details = message, details or []


def _defaults(rules: RuleSet) -> list[tuple[str, str]]:
    d = rules.defaults
    window = send_window_text(d.send_window, " to ", ", ")
    if d.send_window and d.send_window.spread:
        window += f", spread over {format_duration(d.send_window.spread)}"
    cap = cap_text(d.frequency_cap)
    scale = d.feedback_scale
    return [
        ("Time zone", f"{d.timezone} (when the contact has none)"),
        ("Locale", f"{d.locale} (when no letter exists in the contact's locale)"),
        ("Send window", window),
        ("Frequency cap", cap),
        ("Oldest event planned", format_duration(d.max_event_age)),
        ("Feedback scale", f"0 to {scale.max}; {scale.negative} or lower is a complaint"),
    ]


def _rules_page(request: Request, who: Viewer, *, status: int = 200, **explained: Any) -> Response:
    runtime = runtime_of(request)
    rules = rules_in_force(runtime)
    refused = runtime.rules.last_error
    context: dict[str, Any] = {
        "event_text": "",
        "at_text": "",
        "result": None,
        "problem": None,
        "due_contact": "",
    }
    context.update(explained)
    return page(
        request,
        "rules.html",
        who,
        status=status,
        rules=rules,
        defaults=_defaults(rules),
        described=[(r, describe(r)) for r in rules.rules],
        experiments=[
            (name, rule.name, experiment) for name, (rule, experiment) in rules.experiments.items()
        ],
        refused=refused.lines() if refused else [],
        max_event=MAX_EVENT,
        **context,
    )


@router.get("/rules", response_class=HTMLResponse)
def rules_page(request: Request) -> Response:
    return _rules_page(request, viewer(request))


async def _form(request: Request) -> dict[str, str]:
    """The URL-encoded form, read with a cap: a body past MAX_BODY is refused unread."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        raise HTTPException(413, f"the event is too long: at most {MAX_EVENT // 1024} KiB")
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > MAX_BODY:
            raise HTTPException(413, f"the event is too long: at most {MAX_EVENT // 1024} KiB")
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise HTTPException(415, "send the form as the page does")
    try:
        text = body.decode()
    except UnicodeDecodeError:
        raise HTTPException(400, "the form is not UTF-8") from None
    return dict(parse_qsl(text, keep_blank_values=True, max_num_fields=10))


@router.post("/rules/explain", response_class=HTMLResponse)
async def explain_page(request: Request) -> Response:
    who = viewer(request)
    fields = await _form(request)
    check_form(request, who, fields.get("csrf", "")[:512], act=False)
    text, at_text = fields.get("event", ""), fields.get("at", "").strip()[:64]
    return await run_in_threadpool(_explained, request, who, text, at_text)


def _explained(request: Request, who: Viewer, text: str, at_text: str) -> Response:
    shown: dict[str, Any] = {"event_text": text[:MAX_EVENT], "at_text": at_text}
    try:
        result = _explain(runtime_of(request), text, _moment(at_text, request))
    except Problem as exc:
        return _rules_page(request, who, status=422, problem=exc, **shown)
    due_contact = ""
    if result["due_at"]:
        contact_formats = Formats(format_locale(request), ZoneInfo(result["timezone"]))
        due_contact = contact_formats.when(result["due_at"])
    return _rules_page(request, who, result=result, due_contact=due_contact, **shown)


def _moment(text: str, request: Request) -> datetime | None:
    """The "as if it arrived at" time: ISO, in the viewer's zone unless it names one."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise Problem(f"{text!r} is not a date and time such as 2026-11-20T17:30") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=viewer_zone(request))
    utc = moment.astimezone(UTC)
    if not 1970 <= utc.year <= 2200:
        raise Problem("the time must be between 1970 and 2200")
    return utc


def _explain(runtime: Runtime, text: str, at: datetime | None) -> dict[str, Any]:
    if not text.strip():
        raise Problem("paste an event: its JSON in Thankly's generic format")
    if len(text) > MAX_EVENT:
        raise Problem(f"the event is too long: at most {MAX_EVENT // 1024} KiB")
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise Problem(f"this is not valid JSON: {exc}") from None
    except RecursionError:
        raise Problem("this is not valid JSON: nested too deeply") from None
    try:
        event = validate_event(document)
    except InvalidEvent as exc:
        details = [f"{p['field']}: {p['message']}" for p in exc.problems]
        raise Problem("this is not a valid event", details) from None
    if at is not None:
        event = event.model_copy(update={"timestamp": at})
    # As ingest would judge it arriving now, or (with a time) happening and arriving then.
    now = at if at is not None else runtime.clock.now()
    rules = rules_in_force(runtime)
    with runtime.session_factory() as session:
        # A contact keeps the arm it was first given: look it up, as `rules explain` does.
        stored = stored_arm(session) if rules.experiments else None
        result = explain(event, rules, runtime.rules.catalogue, now, stored)
    result["occurred_at"] = event.timestamp.isoformat()
    return result
