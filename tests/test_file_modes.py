"""What Thankly keeps on disk (the database, secrets, letter previews) is readable by the
account running it only, whatever the umask; `thankly run` shows a secret once."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import text

from tests.cli.test_cli_run import thankly_env, thankly_run
from tests.conftest import make_settings
from worker.db import make_engine
from worker.secrets_store import SECRET_KEY_FILE, WEBHOOK_SECRET_FILE, secret_key, webhook_secrets


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def open_umask() -> Iterator[None]:
    """The loosest common umask: files would be world-readable unless Thankly says not."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def test_the_sqlite_database_and_its_wal_are_private(tmp_path: Path) -> None:
    database = tmp_path / "var" / "thankly.db"
    engine = make_engine(f"sqlite:///{database}")
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE t (x TEXT)"))
            conn.execute(text("INSERT INTO t VALUES ('anna@example.org')"))
        with engine.connect() as conn:  # WAL and its index exist while a connection is open
            conn.execute(text("SELECT * FROM t")).all()
            for suffix in ("", "-wal", "-shm"):
                assert mode(Path(f"{database}{suffix}")) == 0o600, suffix
    finally:
        engine.dispose()
    assert mode(database.parent) == 0o700


def test_files_an_older_version_left_readable_are_closed_up(tmp_path: Path) -> None:
    database = tmp_path / "var" / "thankly.db"
    database.parent.mkdir(mode=0o755)
    for suffix in ("", "-journal"):
        Path(f"{database}{suffix}").touch(mode=0o644)
    (database.parent / WEBHOOK_SECRET_FILE).write_text("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n")
    make_engine(f"sqlite:///{database}").dispose()
    assert mode(database) == 0o600
    assert mode(Path(f"{database}-journal")) == 0o600
    settings = make_settings(tmp_path, f"sqlite:///{database}", webhook_secrets=None)
    webhook_secrets(settings, create=True)
    assert mode(database.parent) == 0o700


def test_generated_secrets_are_private(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path, "sqlite://", webhook_secrets=None, secret_key=None, var_dir=tmp_path / "v"
    )
    webhook_secrets(settings, create=True)
    secret_key(settings, create=True)
    assert mode(tmp_path / "v") == 0o700
    assert mode(tmp_path / "v" / WEBHOOK_SECRET_FILE) == 0o600
    assert mode(tmp_path / "v" / SECRET_KEY_FILE) == 0o600


def test_an_html_preview_is_private(tmp_path: Path) -> None:
    from worker.cli.preview import _write_html

    settings = make_settings(tmp_path, "sqlite://", secret_key=SecretStr("k"))
    _write_html(settings, "letter-1", "<p>Dear Anna</p>")
    target = settings.var_dir / "preview" / "letter-1.html"
    assert target.read_text() == "<p>Dear Anna</p>"
    assert mode(target) == 0o600
    assert mode(target.parent) == 0o700
    assert mode(settings.var_dir) == 0o700


@pytest.mark.slow
def test_run_shows_the_webhook_secret_only_when_it_generated_it(tmp_path: Path) -> None:
    var_dir = tmp_path / "var"
    with thankly_run(thankly_env(var_dir), tmp_path) as first:
        first_output = first.stop()
    secret = (var_dir / WEBHOOK_SECRET_FILE).read_text().strip()
    assert secret in first_output
    with thankly_run(thankly_env(var_dir), tmp_path) as second:
        second_output = second.stop()
    assert secret not in second_output
    assert f"kept in {var_dir / WEBHOOK_SECRET_FILE}" in second_output
    assert mode(var_dir) == 0o700
    assert mode(var_dir / "thankly.db") == 0o600
