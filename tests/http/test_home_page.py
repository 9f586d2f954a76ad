"""`GET /` is a small self-contained page that points to health, docs and the admin API."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from tests.conftest import make_settings
from worker.http.app import create_app
from worker.runtime import build_runtime


@pytest.fixture
def home(tmp_path: Path, sqlite_url: str) -> Iterator[Callable[..., str]]:
    """`home(**settings)`: the page's HTML under those settings."""
    runtimes = []

    def get(**overrides: object) -> str:
        runtime = build_runtime(make_settings(tmp_path, sqlite_url, **overrides))
        runtimes.append(runtime)
        with TestClient(create_app(runtime)) as client:
            response = client.get("/")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/html")
        return str(response.text)

    yield get
    for runtime in runtimes:
        runtime.engine.dispose()


def test_the_page_links_to_health_readiness_and_docs(home: Callable[..., str]) -> None:
    page = home()
    assert set(re.findall(r'href="([^"]+)"', page)) == {"/healthz", "/readyz", "/metrics", "/docs"}
    # No external assets: nothing is fetched from another host when the page is opened.
    assert not re.search(r'(?:src|href)="(?:https?:)?//', page)
    assert "http://127.0.0.1:8000/webhooks/generic" in page


def test_the_page_says_whether_the_admin_api_is_on(home: Callable[..., str]) -> None:
    off = home()
    assert "Off: set <code>THANKLY_ADMIN_TOKEN</code>" in off
    on = home(admin_token=SecretStr("a-long-enough-admin-token-0123"))
    assert "Authorization: Bearer &lt;token&gt;" in on and "/admin/letters" in on
    assert "a-long-enough-admin-token-0123" not in on


def test_configured_text_is_escaped(home: Callable[..., str]) -> None:
    page = home(
        public_url='https://thanks.example/"><script>alert(1)</script>',
        admin_token=SecretStr("a-long-enough-admin-token-0123"),
    )
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;/webhooks/generic" in page


def test_the_page_links_to_the_dashboard_when_it_is_on(home: Callable[..., str]) -> None:
    assert 'href="/ui/"' not in home()
    on = home(admin_token=SecretStr("a-long-enough-admin-token-0123"))
    assert '<a href="/ui/">Open the dashboard</a>' in on
