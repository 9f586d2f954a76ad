"""A dashboard on the test's database, and signing in to it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from tests.conftest import make_settings
from worker.clock import FixedClock
from worker.delivery.senders import MemorySender
from worker.http.app import create_app
from worker.queue import RecordingDispatcher
from worker.runtime import Runtime, build_runtime

ADMIN_TOKEN = "admin-token-for-the-dashboard-tests"
READONLY_TOKEN = "read-only-token-for-the-dashboard"
ORIGIN = "http://testserver"


@pytest.fixture
def sender() -> MemorySender:
    return MemorySender()


@pytest.fixture
def ui_settings() -> dict[str, object]:
    """Settings the dashboard's runtime gets beyond the tokens: a test module overrides
    this fixture for its own (a rules file, say)."""
    return {}


@pytest.fixture
def ui_runtime(
    tmp_path: Path,
    db_url: str,
    clock: FixedClock,
    sender: MemorySender,
    ui_settings: dict[str, object],
) -> Iterator[Runtime]:
    runtime = build_runtime(
        make_settings(
            tmp_path,
            db_url,
            admin_token=SecretStr(ADMIN_TOKEN),
            readonly_token=SecretStr(READONLY_TOKEN),
            **ui_settings,
        ),
        clock=clock,
        dispatcher=RecordingDispatcher(),
        sender=sender,
        sleep=lambda _: None,
    )
    yield runtime
    runtime.engine.dispose()


def client_for(runtime: Runtime) -> TestClient:
    return TestClient(create_app(runtime), base_url=ORIGIN, raise_server_exceptions=False)


def sign_in(client: TestClient, token: str = ADMIN_TOKEN) -> None:
    response = client.post(
        "/ui/login", data={"token": token}, headers={"origin": ORIGIN}, follow_redirects=False
    )
    assert response.status_code == 303, response.text


@pytest.fixture
def admin(ui_runtime: Runtime) -> Iterator[TestClient]:
    """Signed in with the admin token."""
    with client_for(ui_runtime) as client:
        sign_in(client)
        yield client


@pytest.fixture
def reader(ui_runtime: Runtime) -> Iterator[TestClient]:
    """Signed in with the read-only token."""
    with client_for(ui_runtime) as client:
        sign_in(client, READONLY_TOKEN)
        yield client


def csrf_of(html: str) -> str:
    """The CSRF token a page's forms carry."""
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "no form with a CSRF token on the page"
    return found.group(1)


def post_form(client: TestClient, path: str, page: str, **fields: str) -> httpx.Response:
    """Submit a form as the browser would: from this origin, with the page's CSRF token."""
    data = {"csrf": csrf_of(client.get(page).text), **fields}
    response: httpx.Response = client.post(
        path, data=data, headers={"origin": ORIGIN}, follow_redirects=False
    )
    return response
