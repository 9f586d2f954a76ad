"""Open pixel, click redirect and one-click unsubscribe.

The pixel always answers 200 with a GIF, whatever the token, so it leaks nothing and
never shows a broken image. A click token that does not verify is a 404: Thankly never
redirects anywhere it did not sign. Unsubscribing takes a POST (RFC 8058); a GET only
shows the button, because link scanners follow every GET in a letter.
"""

from __future__ import annotations

import html
import logging
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from worker.runtime import Runtime
from worker.tracking import (
    PIXEL_GIF,
    read_click,
    read_letter_id,
    record_click,
    record_open,
    unsubscribe,
)

log = logging.getLogger(__name__)
router = APIRouter()
NO_STORE = {"Cache-Control": "no-store, max-age=0", "Pragma": "no-cache"}


def _client(request: Request) -> tuple[str | None, str | None]:
    ip = request.client.host if request.client else None
    return request.headers.get("user-agent"), ip


@router.get("/t/o/{token}.gif")
async def open_pixel(token: str, request: Request) -> Response:
    return await _pixel(token, request)


@router.head("/t/o/{token}.gif")
async def open_pixel_head(token: str, request: Request) -> Response:
    """Proxies and scanners probe with HEAD: same answer, recorded as a machine open."""
    return await _pixel(token, request)


async def _pixel(token: str, request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    letter_id = read_letter_id(request.app.state.secret_key, "open", token)
    if letter_id is not None:
        agent, ip = _client(request)
        try:
            await run_in_threadpool(
                record_open,
                runtime.session_factory,
                letter_id,
                request.method,
                agent,
                ip,
                runtime.clock.now(),
                runtime.settings.machine_open_seconds,
                runtime.settings.crm_opens,
            )
        except Exception:  # the image must load even if the database does not
            log.exception("could not record an open of letter #%s", letter_id)
    return Response(PIXEL_GIF, media_type="image/gif", headers=NO_STORE)


@router.get("/t/c/{token}")
async def click(token: str, request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    found = read_click(request.app.state.secret_key, token)
    if found is None:
        return Response("Not found", status_code=404, media_type="text/plain")
    letter_id, url = found
    agent, ip = _client(request)
    try:
        await run_in_threadpool(
            record_click, runtime.session_factory, letter_id, url, agent, ip, runtime.clock.now()
        )
    except Exception:  # the reader still gets where they were going
        log.exception("could not record a click on letter #%s", letter_id)
    return RedirectResponse(url, status_code=302, headers=NO_STORE)


PAGE = """<!DOCTYPE html><html><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>{title}</title>
<style>body{{font-family:Helvetica,Arial,sans-serif;max-width:480px;margin:48px auto;
padding:0 16px;color:#222}}button{{font-size:17px;padding:12px 22px;border:0;
border-radius:6px;background:#1f5f8b;color:#fff;cursor:pointer}}</style></head>
<body><h1>{title}</h1>{body}</body></html>"""


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(PAGE.format(title=title, body=body), status_code=status, headers=NO_STORE)


@router.get("/u/{token}", response_class=HTMLResponse)
async def unsubscribe_page(token: str, request: Request) -> HTMLResponse:
    if read_letter_id(request.app.state.secret_key, "unsubscribe", token) is None:
        return _page("Link not valid", "<p>This unsubscribe link is not valid.</p>", 404)
    action = html.escape(f"/u/{token}")
    return _page(
        "Unsubscribe",
        "<p>Stop receiving thank-you letters at this address?</p>"
        f'<form method="post" action="{action}"><button type="submit">Unsubscribe</button>'
        "</form>",
    )


@router.post("/u/{token}", response_class=HTMLResponse)
async def unsubscribe_now(token: str, request: Request) -> HTMLResponse:
    """RFC 8058 one-click: mail providers POST `List-Unsubscribe=One-Click` here."""
    runtime: Runtime = request.app.state.runtime
    letter_id = read_letter_id(request.app.state.secret_key, "unsubscribe", token)
    if letter_id is None:
        return _page("Link not valid", "<p>This unsubscribe link is not valid.</p>", 404)
    email: Any = await run_in_threadpool(
        unsubscribe, runtime.session_factory, letter_id, runtime.clock.now()
    )
    if email is None:
        return _page("Link not valid", "<p>This unsubscribe link is not valid.</p>", 404)
    return _page("You are unsubscribed", "<p>You will not receive these letters any more.</p>")
