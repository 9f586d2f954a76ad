"""/healthz says the process lives; /readyz says its database and broker answer."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from tests.conftest import make_settings
from worker.http.app import create_app
from worker.runtime import Runtime, build_runtime


def test_healthz(client: TestClient) -> None:
    response = client.get("/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


def test_readyz_with_the_in_process_broker(client: TestClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "checks": {"database": "ok", "broker": "ok"}}


def test_readyz_with_redis(tmp_path: Path, db_url: str, redis_url: str) -> None:
    runtime = build_runtime(make_settings(tmp_path, db_url, broker_url=redis_url))
    with TestClient(create_app(runtime)) as client:
        assert client.get("/readyz").status_code == 200
    runtime.engine.dispose()


def test_readyz_is_503_when_dependencies_are_down(tmp_path: Path, runtime: Runtime) -> None:
    down = build_runtime(
        make_settings(
            tmp_path,
            "postgresql+psycopg://postgres:not-this-one@127.0.0.1:1/test",
            broker_url="redis://:hidden@127.0.0.1:1/0",
        )
    )
    with TestClient(create_app(down)) as client:
        response = client.get("/readyz")
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["database"].startswith("unreachable")
    assert checks["broker"].startswith("unreachable")
    assert "not-this-one" not in response.text and "hidden" not in response.text
