"""Signing in and out of the dashboard."""

from __future__ import annotations

import logging
import math
from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import RedirectResponse, Response

from worker.http.client_address import client_address
from worker.ui.access import (
    COOKIE,
    SESSION_SECONDS,
    check_form,
    require_on,
    role_of,
    same_origin,
    session_cookie,
    viewer,
)
from worker.ui.pages import page
from worker.ui.throttle import LoginThrottle

router = APIRouter()
log = logging.getLogger(__name__)


@router.get("/login")
def login_form(request: Request, next: str = "/ui/") -> Response:
    require_on(request)
    return page(request, "login.html", None, next=_next(next), error=None)


def _next(target: str) -> str:
    from worker.ui.routes import local_path

    return local_path(target)


@router.post("/login")
def login(
    request: Request,
    token: Annotated[str, Form(max_length=4096)],
    next: Annotated[str, Form(max_length=2048)] = "/ui/",
) -> Response:
    require_on(request)
    if not same_origin(request):
        raise HTTPException(403, "this form was sent from another site")
    throttle: LoginThrottle = request.app.state.login_throttle
    settings = request.app.state.runtime.settings
    address = client_address(request, settings.trusted_proxy_networks) or "?"
    wait = throttle.wait(address)
    if wait:
        minutes = max(1, math.ceil(wait / 60))
        raise HTTPException(
            429,
            f"too many wrong tokens from this address: try again in {minutes} minute(s)",
            headers={"Retry-After": str(math.ceil(wait))},
        )
    role = role_of(request, token)
    if role is None:
        throttle.failed(address)
        # Said plainly, and logged without the token (nor any part of it).
        log.warning("dashboard login refused: wrong token (from %s)", address)
        return page(request, "login.html", None, status=401, next=_next(next), error="wrong token")
    throttle.succeeded(address)
    response = RedirectResponse(_next(next), status_code=303)
    secure = str(request.app.state.runtime.settings.public_url).startswith("https://")
    response.set_cookie(
        COOKIE,
        session_cookie(request, role),
        max_age=SESSION_SECONDS,
        httponly=True,
        samesite="strict",
        secure=secure,
        path="/ui",
    )
    log.info("dashboard login: %s", role)
    return response


@router.post("/logout")
def logout(request: Request, csrf: Annotated[str, Form(max_length=512)]) -> Response:
    who = viewer(request)
    check_form(request, who, csrf, act=False)
    response = RedirectResponse("/ui/login", status_code=303)
    response.delete_cookie(COOKIE, path="/ui")
    return response
