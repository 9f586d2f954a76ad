"""Suppressions: the addresses that get no letters, newest first; adding one and lifting one
(admin only, with a reason, audited) through the same functions as `thankly suppressions`
and `/admin/suppressions` (worker/suppressions.py), with the dashboard viewer as the actor.

A refusal (not an address, no reason, not on the list) is the list page again with the
message and what was typed, so nothing has to be typed twice.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from worker import suppressions
from worker.ui.access import Viewer, check_form, viewer
from worker.ui.pages import page, runtime_of

router = APIRouter()
# Missing fields are refused by the code below (403 for the CSRF token, a message for the
# rest), not by FastAPI's JSON 422: a person reads the answer.
Csrf = Annotated[str, Form(max_length=512)]
Email = Annotated[str, Form(max_length=320)]
Reason = Annotated[str, Form(max_length=2000)]


def _list(
    request: Request,
    who: Viewer,
    contact: str = "",
    *,
    error: str = "",
    status: int = 200,
    typed: dict[str, str] | None = None,
    notice: str = "",
) -> Response:
    rows: list[dict[str, Any]] = []
    try:
        rows = suppressions.list_suppressions(runtime_of(request).session_factory, contact or None)
    except suppressions.SuppressionError as exc:
        error, status = f"Contact: {exc}", 422
    return page(
        request,
        "suppressions.html",
        who,
        status=status,
        rows=rows,
        contact=contact,
        error=error,
        notice=notice,
        typed=typed or {"email": "", "reason": ""},
    )


@router.get("/suppressions", response_class=HTMLResponse)
def list_page(
    request: Request,
    contact: str = "",
    done: str = "",
    email: str = "",
    n: int = 0,
) -> Response:
    who = viewer(request)
    notice = _notice(done, email[:320], n)
    if notice and (email in _listed(request)) != (done in ("added", "already")):
        notice = ""  # a link that claims what the list does not show says nothing
    return _list(request, who, contact.strip()[:320], notice=notice)


def _listed(request: Request) -> set[str]:
    return {r["email"] for r in suppressions.list_suppressions(runtime_of(request).session_factory)}


def _notice(done: str, email: str, n: int) -> str:
    if done == "added":
        letters = f"; {n} pending letter(s) suppressed with it" if n else ""
        return f"{email} gets no more letters{letters}."
    if done == "already":
        return f"{email} was already on the list; nothing changed."
    if done == "lifted":
        staying = f" {n} letter(s) already suppressed stay suppressed." if n else ""
        return f"{email} is off the list: later events plan letters for it again.{staying}"
    return ""


@router.post("/suppressions")
def add(request: Request, csrf: Csrf = "", email: Email = "", reason: Reason = "") -> Response:
    who = viewer(request)
    check_form(request, who, csrf)
    runtime = runtime_of(request)
    try:
        done = suppressions.add(
            runtime.session_factory, email, reason, runtime.clock.now(), actor=who.actor
        )
    except suppressions.SuppressionError as exc:
        typed = {"email": email, "reason": reason}
        return _list(request, who, error=f"Not added: {exc}", status=422, typed=typed)
    query = {
        "done": "added" if done.added else "already",
        "email": done.email,
        "n": len(done.suppressed_letters),
    }
    return RedirectResponse(f"/ui/suppressions?{urlencode(query)}", status_code=303)


@router.post("/suppressions/lift")
def lift(request: Request, csrf: Csrf = "", email: Email = "", reason: Reason = "") -> Response:
    who = viewer(request)
    check_form(request, who, csrf)
    runtime = runtime_of(request)
    try:
        done = suppressions.remove(
            runtime.session_factory, email, reason, runtime.clock.now(), actor=who.actor
        )
    except suppressions.NotSuppressed as exc:
        return _list(request, who, error=f"Not lifted: {exc}.", status=404)
    except suppressions.SuppressionError as exc:
        return _list(request, who, error=f"Not lifted: {exc}", status=422)
    query = {"done": "lifted", "email": done.email, "n": done.letters_staying_suppressed}
    return RedirectResponse(f"/ui/suppressions?{urlencode(query)}", status_code=303)
