"""docker-compose.yml cannot be run here (no Docker engine), so it is checked by reading it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from typer.testing import CliRunner

from worker.cli import app as cli

ROOT = Path(__file__).resolve().parents[1]
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
THANKLY = sorted(name for name, svc in SERVICES.items() if svc.get("image") == "thankly:local")
SUBSTITUTION = re.compile(r"\$\{\w+(?::-(?P<default>[^}]*)|:\?[^}]*)?\}")


def resolve(value: str) -> str:
    """Compose's ${VAR:-default} with the defaults, as a fresh checkout would get them."""
    return SUBSTITUTION.sub(lambda m: m.group("default") or "", value)


def test_the_required_services_are_there() -> None:
    assert {"redis", "postgres", "api", "worker", "scheduler", "mailpit"} <= set(SERVICES)
    assert set(THANKLY) == {"migrate", "api", "worker", "scheduler"}


@pytest.mark.parametrize("name", THANKLY)
def test_each_thankly_command_exists_in_the_cli(name: str) -> None:
    command = SERVICES[name]["command"]
    assert isinstance(command, list), "exec form, so no shell mangles arguments"
    result = CliRunner().invoke(cli, [*command, "--help"], prog_name="thankly")
    assert result.exit_code == 0, f"`thankly {' '.join(command)}`: {result.output}"
    assert "Usage: thankly" in result.output


def test_the_image_runs_the_thankly_command() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["thankly"]' in dockerfile
    assert "constraints.txt" in dockerfile  # the image gets the pinned versions we test


@pytest.mark.parametrize("name", [n for n in SERVICES if n != "migrate"])
def test_long_running_services_have_health_checks(name: str) -> None:
    test = SERVICES[name]["healthcheck"]["test"]
    assert test[0] == "CMD" and len(test) > 1


def test_health_check_modules_exist() -> None:
    for name in ("worker", "scheduler"):
        test = SERVICES[name]["healthcheck"]["test"]
        assert test[1:4] == ["python", "-m", "worker.healthcheck"]
        assert test[4] == name


def test_dependencies_wait_for_health_or_completion() -> None:
    for name, service in SERVICES.items():
        for dependency, condition in service.get("depends_on", {}).items():
            assert dependency in SERVICES, f"{name} depends on unknown {dependency}"
            wanted = condition["condition"]
            if wanted == "service_healthy":
                assert "healthcheck" in SERVICES[dependency]
            else:
                assert (dependency, wanted) == ("migrate", "service_completed_successfully")
    for name in ("api", "worker", "scheduler"):
        assert "migrate" in SERVICES[name]["depends_on"]


def test_environment_points_at_the_compose_services() -> None:
    postgres_env = SERVICES["postgres"]["environment"]
    for name in THANKLY:
        env = {k: resolve(str(v)) for k, v in SERVICES[name]["environment"].items()}
        database = urlsplit(env["THANKLY_DATABASE_URL"])
        assert database.scheme == "postgresql+psycopg"
        assert database.hostname == "postgres" and database.port == 5432
        assert database.username == postgres_env["POSTGRES_USER"]
        assert database.password == resolve(postgres_env["POSTGRES_PASSWORD"])
        assert database.path == "/" + postgres_env["POSTGRES_DB"]
        assert urlsplit(env["THANKLY_BROKER_URL"]).hostname == "redis"
        assert urlsplit(env["THANKLY_SMTP_URL"]).hostname == "mailpit"
        assert urlsplit(env["THANKLY_SMTP_URL"]).port == 1025


def test_secrets_are_required_from_env_not_written_here() -> None:
    env = SERVICES["api"]["environment"]
    for key in ("THANKLY_WEBHOOK_SECRETS", "THANKLY_SECRET_KEY"):
        assert re.fullmatch(r"\$\{" + key + r":\?.+\}", env[key]), f"{key} must be ${{{key}:?…}}"
    example = (ROOT / "config" / "thankly.env.example").read_text()
    for key in ("THANKLY_WEBHOOK_SECRETS", "THANKLY_SECRET_KEY"):
        assert re.search(rf"^{key}=$", example, re.M), f"{key} is blank in the example"


def test_compose_settings_pass_validation() -> None:
    """The values compose gives Thankly are ones Settings accepts."""
    from worker.settings import Settings

    env = {k: resolve(str(v)) for k, v in SERVICES["api"]["environment"].items()}
    env["THANKLY_WEBHOOK_SECRETS"] = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    env["THANKLY_SECRET_KEY"] = "x"
    fields = {k.removeprefix("THANKLY_").lower(): v for k, v in env.items() if v != ""}
    settings = Settings.model_validate(fields)
    assert settings.broker_url == "redis://redis:6379/0"
