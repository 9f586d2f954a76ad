"""Open pixel, click redirect and one-click unsubscribe.

The pixel always answers 200 with a GIF, whatever the token, so it leaks nothing and
never shows a broken image. A click token that does not verify is a 404: Thankly never
redirects anywhere it did not sign. Unsubscribing takes a POST (RFC 8058); a GET only
shows the button, because link scanners follow every GET in a letter. Both pages speak
the letter's language (worker/letters/unsubscribe_texts.py).
"""

from __future__ import annotations

import html
import logging

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from worker.http.client_address import client_address
from worker.letters.unsubscribe_texts import DEFAULT, UnsubscribeTexts, texts_for
from worker.runtime import Runtime
from worker.suppressions import unsubscribe_from_letter
from worker.tracking.hits import (
    PIXEL_GIF,
    letter_locale,
    read_click,
    read_letter_id,
    record_click,
    record_open,
)

log = logging.getLogger(__name__)
router = APIRouter()
NO_STORE = {"Cache-Control": "no-store, max-age=0", "Pragma": "no-cache"}


def _client(request: Request) -> tuple[str | None, str | None]:
    proxies = request.app.state.runtime.settings.trusted_proxy_networks
    return request.headers.get("user-agent"), client_address(request, proxies)


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


PAGE = """<!DOCTYPE html><html lang="{lang}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>{title}</title>
<style>body{{font-family:Helvetica,Arial,sans-serif;max-width:480px;margin:48px auto;
padding:0 16px;color:#222}}button{{font-size:17px;padding:12px 22px;border:0;
border-radius:6px;background:#1f5f8b;color:#fff;cursor:pointer}}</style></head>
<body><h1>{title}</h1>{body}</body></html>"""


def _page(texts: UnsubscribeTexts, title: str, body: str, status: int = 200) -> HTMLResponse:
    """`body` is markup built here; every text in it and `title` are escaped by the caller
    or here, so an edited translation cannot inject markup."""
    page = PAGE.format(lang=html.escape(texts.lang), title=html.escape(title), body=body)
    return HTMLResponse(page, status_code=status, headers=NO_STORE)


def _invalid(texts: UnsubscribeTexts = DEFAULT) -> HTMLResponse:
    return _page(texts, texts.invalid_title, f"<p>{html.escape(texts.invalid_body)}</p>", 404)


async def _locale(runtime: Runtime, letter_id: int) -> tuple[bool, str | None]:
    """(the letter exists, its locale). A database that does not answer still gets the
    reader a page with the button, in English; the POST will say what happened."""
    try:
        locale = await run_in_threadpool(letter_locale, runtime.session_factory, letter_id)
    except Exception:
        log.exception("could not look up letter #%s for its unsubscribe page", letter_id)
        return True, None
    return locale is not None, locale


@router.get("/u/{token}", response_class=HTMLResponse)
async def unsubscribe_page(token: str, request: Request) -> HTMLResponse:
    runtime: Runtime = request.app.state.runtime
    letter_id = read_letter_id(request.app.state.secret_key, "unsubscribe", token)
    if letter_id is None:
        return _invalid()
    exists, locale = await _locale(runtime, letter_id)
    if not exists:
        return _invalid()
    texts = texts_for(locale)
    action = html.escape(f"/u/{token}")
    return _page(
        texts,
        texts.confirm_title,
        f"<p>{html.escape(texts.confirm_question)}</p>"
        f'<form method="post" action="{action}">'
        f'<button type="submit">{html.escape(texts.button)}</button></form>',
    )


@router.post("/u/{token}", response_class=HTMLResponse)
async def unsubscribe_now(token: str, request: Request) -> HTMLResponse:
    """RFC 8058 one-click: mail providers POST `List-Unsubscribe=One-Click` here."""
    runtime: Runtime = request.app.state.runtime
    letter_id = read_letter_id(request.app.state.secret_key, "unsubscribe", token)
    if letter_id is None:
        return _invalid()
    done = await run_in_threadpool(
        unsubscribe_from_letter, runtime.session_factory, letter_id, runtime.clock.now()
    )
    if done is None:
        return _invalid()
    texts = texts_for(done[1])
    return _page(texts, texts.done_title, f"<p>{html.escape(texts.done_body)}</p>")
