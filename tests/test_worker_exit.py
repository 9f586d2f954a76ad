"""`thankly worker` ends with Celery's exit status, so a supervisor restarts a worker that
stopped on a broker error and leaves one that was told to stop alone.

A real worker process on the test Redis (db 11). It logs in as a user of its own, so
that taking that user's right to BRPOP (Redis answers NOPERM, an error Celery does not
retry) stops this worker only, never another process using the same server.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.conftest import RULES_FILE, TEMPLATES
from tests.helpers import THANKLY, thankly_in_process

READY = "ready."


def command(connection: redis.Redis, *args: str) -> None:
    connection.execute_command(*args)  # type: ignore[no-untyped-call]


@pytest.fixture
def broker_user(redis_url: str) -> Iterator[tuple[redis.Redis, str, str]]:
    """(admin connection, user name, broker URL logging in as that user)."""
    admin = redis.Redis.from_url(redis_url)
    name, password = f"thankly_test_{secrets.token_hex(4)}", secrets.token_hex(16)
    try:
        command(admin, "ACL", "SETUSER", name, "on", f">{password}", "~*", "&*", "+@all")
    except redis.ResponseError as exc:  # fakeredis without ACL support
        admin.close()
        pytest.skip(f"this Redis has no ACL users: {exc}")
    host_and_db = redis_url.split("://", 1)[1]
    try:
        yield admin, name, f"redis://{name}:{password}@{host_and_db}"
    finally:
        command(admin, "ACL", "DELUSER", name)
        admin.close()


def start_worker(tmp_path: Path, broker_url: str) -> tuple[subprocess.Popen[str], Path]:
    env = {
        "THANKLY_VAR_DIR": str(tmp_path / "var"),
        "THANKLY_BROKER_URL": broker_url,
        "THANKLY_SECRET_KEY": "s" * 40,
        "THANKLY_MAIL_FROM": "Shop <thanks@shop.example>",
        "THANKLY_RULES_FILE": str(RULES_FILE),
        "THANKLY_TEMPLATES_DIR": str(TEMPLATES),
    }
    assert thankly_in_process("db", "upgrade", env=env).returncode == 0  # set-up only
    log = tmp_path / "worker.log"
    base = {k: v for k, v in os.environ.items() if not k.startswith("THANKLY_")}
    process = subprocess.Popen(
        [*THANKLY, "worker", "--pool", "solo", "--concurrency", "1"],
        env=base | env,
        stdout=subprocess.DEVNULL,
        stderr=log.open("w"),
        text=True,
    )
    deadline = time.monotonic() + 60
    while READY not in log.read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"the worker did not start:\n{log.read_text()[-2000:]}")
        time.sleep(0.2)
    return process, log


def stopped(process: subprocess.Popen[str], timeout: float = 60) -> int:
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        pytest.fail("the worker kept running")


def test_a_worker_stopped_by_a_broker_error_exits_non_zero_and_says_why(
    tmp_path: Path, broker_user: tuple[redis.Redis, str, str]
) -> None:
    admin, name, url = broker_user
    process, log = start_worker(tmp_path, url)
    command(admin, "ACL", "SETUSER", name, "-brpop")
    command(admin, "CLIENT", "KILL", "USER", name)  # it reconnects, then BRPOPs
    assert stopped(process) != 0
    text = log.read_text()
    assert "Unrecoverable error" in text and "NoPermissionError" in text
    assert "the Celery worker stopped with exit status 1" in text


def test_a_worker_told_to_stop_exits_zero(
    tmp_path: Path, broker_user: tuple[redis.Redis, str, str]
) -> None:
    _, _, url = broker_user
    process, log = start_worker(tmp_path, url)
    process.send_signal(signal.SIGTERM)
    assert stopped(process) == 0
    assert "stopped with exit status" not in log.read_text()
