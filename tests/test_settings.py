"""Settings: clear start-up errors, no secrets in reprs, generated secrets that persist."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr

from worker.secrets_store import MissingSecretError, secret_key, webhook_secrets
from worker.settings import Settings, SettingsError, load_settings, redact_url


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("THANKLY_CRM", "salesforce", "THANKLY_CRM:"),
        (
            "THANKLY_BROKER_URL",
            "amqp://guest@localhost//",
            "THANKLY_BROKER_URL: must be a redis://",
        ),
        ("THANKLY_DATABASE_URL", "thankly.db", "THANKLY_DATABASE_URL: must be a URL"),
        ("THANKLY_PUBLIC_URL", "example.com", "THANKLY_PUBLIC_URL: must start with http"),
        ("THANKLY_WEBHOOK_SECRETS", "whsec_!!!", "THANKLY_WEBHOOK_SECRETS: must be whsec_"),
        (
            "THANKLY_WEBHOOK_SECRETS",
            "whsec_c2hvcnQ=",
            "THANKLY_WEBHOOK_SECRETS: must decode to at least 16",
        ),
        ("THANKLY_MACHINE_OPEN_SECONDS", "soon", "THANKLY_MACHINE_OPEN_SECONDS:"),
    ],
)
def test_a_wrong_value_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert str(info.value).startswith(expected)
    assert "\n" not in str(info.value)


def test_cli_stops_with_one_clear_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "worker.cli", "db", "upgrade"],
        env={
            "THANKLY_BROKER_URL": "amqp://localhost",
            "PATH": "/usr/bin:/bin",
            "THANKLY_VAR_DIR": str(tmp_path),
        },
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: THANKLY_BROKER_URL: must be a redis://")
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_secrets_never_appear_in_repr() -> None:
    settings = Settings(
        webhook_secrets=SecretStr("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
        admin_token=SecretStr("admin-token-value"),
        database_url="postgresql+psycopg://thankly:db-password@db/thankly",
        smtp_url="smtp://user:smtp-password@mail:587",
        broker_url="redis://:redis-password@redis:6379/0",
    )
    text = repr(settings) + str(settings)
    for secret in (
        "MfKQ9r8",
        "admin-token-value",
        "db-password",
        "smtp-password",
        "redis-password",
    ):
        assert secret not in text


def test_redact_url_hides_only_the_password() -> None:
    assert (
        redact_url("smtp://user:pw@mail:587?starttls=true")
        == "smtp://user:***@mail:587?starttls=true"
    )
    assert redact_url("sqlite:///var/thankly.db") == "sqlite:///var/thankly.db"


def test_embedded_defaults() -> None:
    settings = Settings()
    assert settings.effective_database_url == "sqlite:///var/thankly.db"
    assert settings.effective_broker_url == "memory://localhost/"
    assert settings.outbox_dir == Path("var/outbox")
    assert settings.crm == "log" and settings.machine_open_seconds == 5


def test_generated_secrets_persist_across_restarts(tmp_path: Path) -> None:
    settings = Settings(var_dir=tmp_path)
    first = webhook_secrets(settings, create=True)
    key = secret_key(settings, create=True)
    assert first[0].startswith("whsec_")
    assert (tmp_path / "webhook_secret").stat().st_mode & 0o777 == 0o600
    # A "restart": a new Settings object reads the same files.
    again = Settings(var_dir=tmp_path)
    assert webhook_secrets(again) == first
    assert secret_key(again, create=True) == key


def test_environment_secrets_win_over_generated_ones(tmp_path: Path) -> None:
    webhook_secrets(Settings(var_dir=tmp_path), create=True)
    configured = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    settings = Settings(var_dir=tmp_path, webhook_secrets=SecretStr(f" {configured} ,"))
    assert webhook_secrets(settings) == [configured]


def test_production_processes_do_not_invent_a_secret(tmp_path: Path) -> None:
    with pytest.raises(MissingSecretError, match="THANKLY_WEBHOOK_SECRETS is not set"):
        webhook_secrets(Settings(var_dir=tmp_path))
    assert not (tmp_path / "webhook_secret").exists()


def test_empty_variables_mean_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    """Compose passes `${THANKLY_ADMIN_TOKEN:-}`: that must not be an empty token."""
    for name in (
        "THANKLY_ADMIN_TOKEN",
        "THANKLY_CRM_URL",
        "THANKLY_SMTP_URL",
        "THANKLY_WEBHOOK_SECRETS",
    ):
        monkeypatch.setenv(name, "")
    settings = load_settings()
    assert settings.admin_token is None and settings.crm_url is None
    assert settings.smtp_url is None and settings.webhook_secrets is None
