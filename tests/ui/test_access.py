"""Who gets into the dashboard, and what a session and a form must carry."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from tests.conftest import NOW, make_settings
from tests.ui.conftest import ADMIN_TOKEN, ORIGIN, READONLY_TOKEN, client_for, csrf_of, sign_in
from worker.clock import FixedClock
from worker.queue import RecordingDispatcher
from worker.runtime import Runtime, build_runtime
from worker.settings import SettingsError, _check_secret_lengths
from worker.ui.access import COOKIE
from worker.ui.pages import CSP


def test_the_dashboard_is_off_without_an_admin_token(tmp_path: Path, sqlite_url: str) -> None:
    runtime = build_runtime(
        make_settings(tmp_path, sqlite_url, readonly_token=SecretStr(READONLY_TOKEN)),
        clock=FixedClock(NOW),
        dispatcher=RecordingDispatcher(),
    )
    with client_for(runtime) as client:
        for path in ("/ui/", "/ui/login", "/ui/letters", "/ui/static/ui.css"):
            response = client.get(path, follow_redirects=False)
            assert response.status_code == 404, path
        refused = client.post(
            "/ui/login", data={"token": READONLY_TOKEN}, headers={"origin": ORIGIN}
        )
        assert refused.status_code == 404
    runtime.engine.dispose()


def test_signed_out_every_page_leads_to_the_login_and_back(ui_runtime: Runtime) -> None:
    with client_for(ui_runtime) as client:
        response = client.get("/ui/letters?status=failed", follow_redirects=False)
        assert response.status_code == 303
        assert response.headers["location"] == "/ui/login?next=/ui/letters%3Fstatus%3Dfailed"
        form = client.get(response.headers["location"]).text
        assert 'name="next" value="/ui/letters?status=failed"' in form
        signed = client.post(
            "/ui/login",
            data={"token": ADMIN_TOKEN, "next": "/ui/letters?status=failed"},
            headers={"origin": ORIGIN},
            follow_redirects=False,
        )
        assert signed.headers["location"] == "/ui/letters?status=failed"


@pytest.mark.parametrize(
    "target", ["https://evil.example/", "//evil.example/ui/", "/admin/x", "/ui\\..\\x"]
)
def test_login_never_redirects_off_the_dashboard(ui_runtime: Runtime, target: str) -> None:
    with client_for(ui_runtime) as client:
        signed = client.post(
            "/ui/login",
            data={"token": ADMIN_TOKEN, "next": target},
            headers={"origin": ORIGIN},
            follow_redirects=False,
        )
        assert signed.headers["location"] == "/ui/"


def test_a_wrong_token_is_refused_and_never_logged(
    ui_runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with client_for(ui_runtime) as client:
        wrong = ADMIN_TOKEN[:-1] + "x"
        refused = client.post("/ui/login", data={"token": wrong}, headers={"origin": ORIGIN})
        assert refused.status_code == 401 and "wrong token" in refused.text
        assert COOKIE not in client.cookies
        sign_in(client)
    assert "dashboard login refused" in caplog.text
    for secret in (wrong, ADMIN_TOKEN, READONLY_TOKEN):
        assert secret not in caplog.text


def test_the_session_cookie_is_signed_http_only_and_strict(ui_runtime: Runtime) -> None:
    with client_for(ui_runtime) as client:
        response = client.post(
            "/ui/login",
            data={"token": ADMIN_TOKEN},
            headers={"origin": ORIGIN},
            follow_redirects=False,
        )
        cookie = response.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/ui" in cookie
        assert ADMIN_TOKEN not in cookie
        value = client.cookies[COOKIE]
        # One changed character of the signature and the session is gone.
        forged = value[:-1] + ("A" if value[-1] != "A" else "B")
        client.cookies.set(COOKIE, forged, path="/ui")
        assert client.get("/ui/letters", follow_redirects=False).status_code == 303


def test_changing_the_token_ends_every_session(ui_runtime: Runtime) -> None:
    with client_for(ui_runtime) as client:
        sign_in(client)
        assert client.get("/ui/letters").status_code == 200
        rotated = ui_runtime.settings.model_copy(
            update={"admin_token": SecretStr("a-brand-new-admin-token-after-a-leak")}
        )
        client.app.state.runtime = replace(ui_runtime, settings=rotated)  # type: ignore[attr-defined]
        assert client.get("/ui/letters", follow_redirects=False).status_code == 303


def test_pages_carry_a_strict_policy_and_no_script(admin: TestClient) -> None:
    response = admin.get("/ui/letters")
    assert response.headers["content-security-policy"] == CSP
    assert "script-src" not in CSP and "default-src 'none'" in CSP
    assert "frame-ancestors 'none'" in CSP
    assert response.headers["cache-control"] == "no-store"
    assert "<script" not in response.text


def test_a_form_needs_this_sessions_csrf_token_and_this_origin(admin: TestClient) -> None:
    token = csrf_of(admin.get("/ui/letters").text)
    for data, headers in (
        ({}, {"origin": ORIGIN}),  # no token
        ({"csrf": token + "x"}, {"origin": ORIGIN}),  # a wrong one
        ({"csrf": token}, {"origin": "https://evil.example"}),  # the right one, from elsewhere
    ):
        response = admin.post("/ui/logout", data=data, headers=headers, follow_redirects=False)
        assert response.status_code in (403, 422)
        assert admin.get("/ui/letters", follow_redirects=False).status_code == 200  # still in
    out = admin.post(
        "/ui/logout", data={"csrf": token}, headers={"origin": ORIGIN}, follow_redirects=False
    )
    assert out.status_code == 303
    assert admin.get("/ui/letters", follow_redirects=False).status_code == 303


def test_another_sessions_csrf_token_does_not_work(ui_runtime: Runtime) -> None:
    with client_for(ui_runtime) as first, client_for(ui_runtime) as second:
        sign_in(first)
        sign_in(second)
        theirs = csrf_of(first.get("/ui/letters").text)
        response = second.post("/ui/logout", data={"csrf": theirs}, headers={"origin": ORIGIN})
        assert response.status_code == 403


def test_a_read_only_token_must_differ_from_the_admin_token(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path,
        "sqlite://",
        secret_key=SecretStr("k" * 40),
        admin_token=SecretStr(ADMIN_TOKEN),
        readonly_token=SecretStr(ADMIN_TOKEN),
    )
    with pytest.raises(SettingsError, match="THANKLY_READONLY_TOKEN: must differ"):
        _check_secret_lengths(settings)
