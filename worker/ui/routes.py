"""The dashboard's routes, mounted under /ui by the HTTP app (`install`)."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from worker.ui import events, experiments, letters, login, overview, rules, suppressions, upcoming
from worker.ui.access import LoginRequired, require_on, viewer
from worker.ui.pages import HERE, TZ_COOKIE, page, zones
from worker.ui.throttle import LoginThrottle

router = APIRouter(prefix="/ui", include_in_schema=False)
for page_routes in (login, overview, letters, upcoming, events, rules, suppressions, experiments):
    router.include_router(page_routes.router)


@router.get("/")
def start(request: Request) -> Response:
    viewer(request)
    return RedirectResponse("/ui/overview", status_code=303)


# Stylesheets by name: only files in static/ whose names are plain (no path can be asked).
STYLESHEETS = {p.name for p in (HERE / "static").glob("*.css")}


@router.get("/static/{name}")
def stylesheet(request: Request, name: str) -> Response:
    require_on(request)
    if name not in STYLESHEETS:
        raise HTTPException(404, "no such stylesheet")
    return FileResponse(
        HERE / "static" / name,
        media_type="text/css",
        headers={"Cache-Control": "max-age=3600", "X-Content-Type-Options": "nosniff"},
    )


@router.get("/timezone")
def choose_timezone(request: Request, tz: str = "UTC", back: str = "/ui/") -> Response:
    """The viewer's time zone for every page, in a cookie (no secret: a preference)."""
    viewer(request)
    if tz not in zones():
        raise HTTPException(422, f"{tz!r} is not a time zone: pick one from the list")
    response = RedirectResponse(local_path(back), status_code=303)
    response.set_cookie(TZ_COOKIE, tz, max_age=365 * 86400, samesite="strict", httponly=True)
    return response


def local_path(target: str) -> str:
    """Only a path on this dashboard: a redirect never leaves it (no open redirect)."""
    if target.startswith("/ui/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/ui/"


async def _login_required(request: Request, exc: Exception) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/ui/login?next={quote(local_path(target))}", status_code=303)


async def _error_page(request: Request, exc: Exception) -> Response:
    """Errors under /ui as a page; elsewhere as the API's JSON."""
    assert isinstance(exc, StarletteHTTPException)
    if not request.url.path.startswith("/ui"):
        from fastapi.exception_handlers import http_exception_handler

        return await http_exception_handler(request, exc)
    try:
        who = viewer(request)
    except (LoginRequired, HTTPException):
        who = None
    response = page(request, "error.html", who, status=exc.status_code, message=str(exc.detail))
    response.headers.update(exc.headers or {})  # e.g. a 429's Retry-After
    return response


def install(app: FastAPI) -> None:
    app.state.login_throttle = LoginThrottle()
    app.include_router(router)
    app.add_exception_handler(LoginRequired, _login_required)
    app.add_exception_handler(StarletteHTTPException, _error_page)
