"""Shared fixtures.

Databases: every DB test runs on SQLite and on PostgreSQL (127.0.0.1:5432, a throwaway
database per test session). Redis: the real server on 127.0.0.1:6379, or fakeredis's TCP
server when it is absent. With THANKLY_TEST_REQUIRE_SERVICES=1 (CI) a missing service
fails the run instead of skipping or substituting.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import create_engine, text

from worker.clock import FixedClock
from worker.http.app import create_app
from worker.migrate import upgrade
from worker.models import Base
from worker.queue import RecordingDispatcher
from worker.runtime import Runtime, build_runtime, set_runtime
from worker.settings import Settings

REQUIRE_SERVICES = os.environ.get("THANKLY_TEST_REQUIRE_SERVICES") == "1"
PG_ADMIN_URL = os.environ.get(
    "THANKLY_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("THANKLY_TEST_REDIS_URL", "redis://127.0.0.1:6379/11")

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
OLD_SECRET = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"
NOW = datetime(2026, 11, 20, 10, 5, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "examples" / "events"
RULES_FILE = ROOT / "config" / "rules.yaml"
TEMPLATES = ROOT / "templates"


def _unavailable(what: str, why: object) -> None:
    message = f"{what} not reachable: {why}"
    if REQUIRE_SERVICES:
        pytest.fail(message + " (THANKLY_TEST_REQUIRE_SERVICES=1)", pytrace=False)
    pytest.skip(message)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests see only the THANKLY_* settings they set themselves."""
    for key in list(os.environ):
        if key.startswith("THANKLY_") and not key.startswith("THANKLY_TEST_"):
            monkeypatch.delenv(key)


@pytest.fixture(autouse=True)
def _request_budgets_wait_in_virtual_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """A CRM's request budget (worker/crm/rate_budget.py) that is spent waits for the next
    window: up to a second for Bitrix24 and amoCRM, seconds a test. Budgets built in a test
    count and wait on a clock that a wait moves forward instead of sleeping; what they
    allow, and when they wait, is unchanged. Tests that pass a clock and sleep keep theirs."""
    from worker.crm.rate_budget import RateBudget

    waited = [0.0]

    def clock() -> float:
        return time.time() + waited[0]

    def sleep(seconds: float) -> None:
        waited[0] += seconds

    monkeypatch.setattr(RateBudget.__init__, "__kwdefaults__", {"clock": clock, "sleep": sleep})


# --- databases -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"thankly_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        admin.dispose()
        _unavailable("PostgreSQL", exc)
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    upgrade(url)
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Migrated once; each test gets a copy (faster than migrating per test)."""
    path = tmp_path_factory.mktemp("sqlite") / "template.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    path = tmp_path / "thankly.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite:///{path}"


# Every table the models have: one added later is emptied too (a table left out kept its
# rows from test to test).
PG_TABLES = tuple(Base.metadata.tables)
# A table the previous test left rows in, or whose ids it drew (a rolled-back insert too).
_PG_DIRTY = " UNION ALL ".join(
    f"SELECT '{table}' WHERE EXISTS (SELECT FROM {table}) OR (SELECT last_value "
    "FROM pg_sequences WHERE format('%I.%I', schemaname, sequencename) = "
    f"pg_get_serial_sequence('{table}', 'id')) IS NOT NULL"
    for table in PG_TABLES
)


@pytest.fixture
def pg_clean_url(pg_url: str) -> str:
    """The session's PostgreSQL database, emptied for this test: as `TRUNCATE PG_TABLES
    RESTART IDENTITY CASCADE`, but only the tables that need it (TRUNCATE makes new files
    for each table and index: ~80 ms a test on a busy machine, most tests touch a few)."""
    engine = create_engine(pg_url)
    with engine.begin() as conn:
        dirty = list(conn.scalars(text(_PG_DIRTY)))
        if dirty:
            conn.execute(text(f"TRUNCATE {', '.join(dirty)} RESTART IDENTITY CASCADE"))
    engine.dispose()
    return pg_url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str:
    """Runs the test once on each backend."""
    name = "sqlite_url" if request.param == "sqlite" else "pg_clean_url"
    url: str = request.getfixturevalue(name)
    return url


# --- redis -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_server_url() -> Iterator[str]:
    try:
        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
        client.ping()
        client.close()
        yield REDIS_URL
        return
    except redis.RedisError as exc:
        if REQUIRE_SERVICES:
            _unavailable("Redis", exc)
    from fakeredis import TcpFakeServer

    server = TcpFakeServer(("127.0.0.1", 0), server_type="redis")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"redis://127.0.0.1:{server.server_address[1]}/0"
    server.shutdown()


@pytest.fixture
def redis_url(redis_server_url: str) -> str:
    client = redis.Redis.from_url(redis_server_url)
    client.flushdb()
    client.close()
    return redis_server_url


# --- the application ---------------------------------------------------------------------


def make_settings(tmp_path: Path, db_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "var_dir": tmp_path / "var",
        "database_url": db_url,
        "webhook_secrets": SecretStr(f"{SECRET},{OLD_SECRET}"),
        "secret_key": SecretStr("test-secret-key"),
        "rules_file": RULES_FILE,
        "templates_dir": TEMPLATES,
        "mail_from": "Thankly <thanks@shop.example>",
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(NOW)


@pytest.fixture
def dispatcher() -> RecordingDispatcher:
    return RecordingDispatcher()


@pytest.fixture
def runtime(
    tmp_path: Path, db_url: str, clock: FixedClock, dispatcher: RecordingDispatcher
) -> Iterator[Runtime]:
    rt = build_runtime(
        make_settings(tmp_path, db_url),
        clock=clock,
        dispatcher=dispatcher,
        sleep=lambda _: None,  # in-task retries wait on the fake clock's terms: not at all
    )
    set_runtime(rt)
    yield rt
    set_runtime(None)
    rt.engine.dispose()


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(runtime), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def cli(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Runs `thankly …` in this process against the test's database."""
    from typer.testing import CliRunner, Result

    from worker.cli.main import app

    monkeypatch.setenv("THANKLY_DATABASE_URL", runtime.engine.url.render_as_string(False))

    def run(*args: str) -> Result:
        return CliRunner().invoke(app, list(args))

    return run


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def smtp_runtimes(tmp_path: Path, db_url: str, clock: FixedClock) -> Iterator[Any]:
    """Builds runtimes that send to a local SMTP port: `build(port, userinfo="", **settings)`."""
    from worker.delivery.smtp import SmtpConfig, SmtpSender

    made: list[Runtime] = []

    def build(port: int, userinfo: str = "", **overrides: Any) -> Runtime:
        settings = make_settings(
            tmp_path,
            db_url,
            smtp_url=f"smtp://{userinfo}127.0.0.1:{port}",
            smtp_retry_wait_seconds=0,
            **overrides,
        )
        sender = SmtpSender(SmtpConfig.from_url(settings.smtp_url or "", timeout=5))
        runtime = build_runtime(
            settings, clock=clock, dispatcher=RecordingDispatcher(), sender=sender
        )
        made.append(runtime)
        return runtime

    yield build
    for runtime in made:
        runtime.sender.close()  # type: ignore[attr-defined]
        runtime.engine.dispose()
