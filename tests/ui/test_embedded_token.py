"""`thankly run` gives its dashboard a token of its own; production processes never do."""

from __future__ import annotations

import stat
from pathlib import Path

from pydantic import SecretStr

from tests.conftest import make_settings
from worker.secrets_store import ADMIN_TOKEN_FILE, embedded_admin_token


def test_a_generated_token_is_kept_private_and_reused(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, "sqlite://")
    token, generated = embedded_admin_token(settings)
    assert generated and len(token) >= 32
    kept = settings.var_dir / ADMIN_TOKEN_FILE
    assert kept.read_text().strip() == token
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert embedded_admin_token(settings) == (token, False)  # the same after a restart


def test_the_configured_token_wins_and_nothing_is_written(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, "sqlite://", admin_token=SecretStr("x" * 30))
    assert embedded_admin_token(settings) == ("x" * 30, False)
    assert not (settings.var_dir / ADMIN_TOKEN_FILE).exists()
