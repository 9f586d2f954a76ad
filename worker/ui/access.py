"""Who may use the dashboard: a login with the admin token (every page and action) or the
read-only token (every page, no action), kept in a signed, HTTP-only session cookie.

The cookie holds the role, a fingerprint of the token it was made with (so changing the
token logs every session out), a random nonce and an expiry, signed with a key derived from
THANKLY_SECRET_KEY. Each form carries a CSRF token derived from the session's nonce, and a
POST whose Origin (or Referer) names another site is refused before that. With no token
set the dashboard is off (404), like the admin API.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from fastapi import HTTPException, Request

from worker.http.client_address import client_address
from worker.tracking.tokens import make_token, read_token

COOKIE = "thankly_session"
SESSION_SECONDS = 12 * 3600
Role = Literal["admin", "viewer"]


class LoginRequired(Exception):
    """No valid session: the page answers with a redirect to the login form."""


@dataclass(frozen=True)
class Viewer:
    role: Role
    nonce: str
    host: str

    @property
    def can_act(self) -> bool:
        return self.role == "admin"

    @property
    def actor(self) -> str:
        """Who acted, for the audit log."""
        return f"dashboard ({self.host})"


def _fingerprint(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:16]


def tokens(request: Request) -> dict[Role, str]:
    settings = request.app.state.runtime.settings
    found: dict[Role, str] = {}
    if settings.admin_token is not None:
        found["admin"] = settings.admin_token.get_secret_value()
    if settings.readonly_token is not None:
        found["viewer"] = settings.readonly_token.get_secret_value()
    return found


def require_on(request: Request) -> None:
    if "admin" not in tokens(request):
        raise HTTPException(404, "the dashboard is off: THANKLY_ADMIN_TOKEN is not set")


def role_of(request: Request, given: str) -> Role | None:
    """The role a token typed into the login form gives, compared in constant time on
    fixed-length digests (neither content nor length leaks by timing)."""
    digest = hashlib.sha256(given.encode()).digest()
    found: Role | None = None
    for role, token in tokens(request).items():
        if hmac.compare_digest(digest, hashlib.sha256(token.encode()).digest()):
            found = role
    return found


def _key(request: Request) -> str:
    secret: str = request.app.state.secret_key
    return secret


def session_cookie(request: Request, role: Role) -> str:
    payload = {
        "role": role,
        "fp": _fingerprint(tokens(request)[role]),
        "nonce": secrets.token_urlsafe(16),
        "exp": int(time.time()) + SESSION_SECONDS,
    }
    return make_token(_key(request), "ui-session", json.dumps(payload, separators=(",", ":")))


def viewer(request: Request) -> Viewer:
    """The signed-in viewer, or LoginRequired."""
    require_on(request)
    raw = request.cookies.get(COOKIE)
    text = read_token(_key(request), "ui-session", raw) if raw else None
    if text is None:
        raise LoginRequired
    payload = json.loads(text)
    role = payload.get("role")
    current = tokens(request).get(role) if role in ("admin", "viewer") else None
    if (
        current is None
        or not hmac.compare_digest(str(payload.get("fp")), _fingerprint(current))
        or int(payload.get("exp", 0)) < time.time()
    ):
        raise LoginRequired
    settings = request.app.state.runtime.settings
    host = client_address(request, settings.trusted_proxy_networks) or "?"
    return Viewer(role, str(payload["nonce"]), host)


def csrf_token(request: Request, who: Viewer) -> str:
    return make_token(_key(request), "ui-csrf", who.nonce)


def same_origin(request: Request) -> bool:
    """A browser names the page a form was sent from (Origin, else Referer); a form from
    another site is refused. Neither header (a client that is not a browser) passes here
    and still needs the CSRF token."""
    sent = request.headers.get("origin") or request.headers.get("referer")
    if not sent or sent == "null":
        return sent is None
    own = urlsplit(str(request.base_url))
    other = urlsplit(sent)
    return (other.scheme, other.netloc) == (own.scheme, own.netloc)


def check_form(request: Request, who: Viewer, token: str, *, act: bool = True) -> None:
    """Refuse a POST from another site, without this session's CSRF token, or (`act`) by a
    read-only viewer."""
    if not same_origin(request):
        raise HTTPException(403, "this form was sent from another site")
    expected = csrf_token(request, who)
    if not hmac.compare_digest(token.encode(), expected.encode()):
        raise HTTPException(403, "the form is out of date or not from this dashboard: reload it")
    if act and not who.can_act:
        raise HTTPException(403, "read-only: sign in with the admin token to act")
