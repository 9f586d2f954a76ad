"""docker-compose.yml cannot be run here (no Docker engine), so it is checked by reading it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from typer.testing import CliRunner

from worker.cli.main import app as cli

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


# --- .env reaches the containers (issue 9, point 8) ---------------------------------------

EXAMPLE = (ROOT / "config" / "thankly.env.example").read_text()
# Variables the example mentions, set or commented out (`# THANKLY_X=…`).
EXAMPLE_VARS = re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", EXAMPLE, re.M)
# Inside the stack these must point at its own services, whatever .env says.
STACK_INTERNAL = {"THANKLY_DATABASE_URL", "THANKLY_BROKER_URL", "THANKLY_VAR_DIR"}


def dockerfile_lines() -> list[str]:
    return [line.strip() for line in (ROOT / "Dockerfile").read_text().splitlines()]


@pytest.mark.parametrize("name", THANKLY)
def test_every_thankly_service_reads_env_file(name: str) -> None:
    env_file = SERVICES[name]["env_file"]
    assert (env_file if isinstance(env_file, list) else [env_file]) == [".env"]


@pytest.mark.parametrize("name", THANKLY)
def test_compose_overrides_only_the_stack_internal_settings(name: str) -> None:
    """environment beats env_file, so any other value written here would hide the .env one;
    what is not internal may only default a variable from .env to itself."""
    for key, value in SERVICES[name]["environment"].items():
        if key in STACK_INTERNAL or not key.startswith("THANKLY_"):
            continue
        assert re.fullmatch(r"\$\{" + key + r"(:-[^}]*|:\?[^}]*)\}", str(value)), (
            f"{name}: {key}={value} would override THANKLY settings in .env"
        )


def test_every_variable_in_the_env_example_is_a_setting() -> None:
    from worker.settings import setting_names

    thankly = [v for v in EXAMPLE_VARS if v.startswith("THANKLY_")]
    assert "THANKLY_RULES_FILE" in thankly and "THANKLY_LOG_FORMAT" in thankly
    assert sorted(set(thankly) - set(setting_names())) == []
    others = set(EXAMPLE_VARS) - set(thankly)
    compose_text = (ROOT / "docker-compose.yml").read_text()
    assert all("${" + v in compose_text for v in others), others  # e.g. POSTGRES_PASSWORD


def test_the_env_example_offers_only_crm_values_that_work() -> None:
    from worker.crm.adapters import make_crm
    from worker.settings import Settings

    [crm] = re.findall(r"^THANKLY_CRM=(\w+)$", EXAMPLE, re.M)
    settings = Settings.model_validate({"crm": crm, "var_dir": "var"})
    assert make_crm(settings) is not None
    # The native CRMs are offered commented out, with every variable a real setting.
    native = re.findall(r"^# (THANKLY_(?:HUBSPOT|PIPEDRIVE|BITRIX24|AMOCRM)_\w+)=", EXAMPLE, re.M)
    assert len(native) >= 10
    for name in native:
        assert name.removeprefix("THANKLY_").lower() in Settings.model_fields, name


def test_a_rules_file_chosen_in_env_resolves_inside_the_container() -> None:
    """`THANKLY_RULES_FILE=config/rules.demo.yaml` in .env: relative to the image's WORKDIR,
    where compose mounts the repository's config/ folder."""
    from worker.letters.catalogue import Catalogue
    from worker.planning.rules import load_rules

    [chosen] = re.findall(r"^#\s*THANKLY_RULES_FILE=(\S+)$", EXAMPLE, re.M)
    assert not Path(chosen).is_absolute()
    [workdir] = [line.split()[1] for line in dockerfile_lines() if line.startswith("WORKDIR ")]
    in_container = Path(workdir) / chosen
    mounts = {}
    for volume in SERVICES["worker"]["volumes"]:
        source, target = volume.split(":")[:2]
        mounts[Path(target)] = ROOT / source
    [(target, source)] = [(t, s) for t, s in mounts.items() if in_container.is_relative_to(t)]
    on_host = source / in_container.relative_to(target)
    rules = load_rules(on_host, Catalogue.scan(ROOT / "templates"))
    # The demo's promise: a letter in Mailpit within a minute of the event.
    assert rules.rules and all(r.delay.max.total_seconds() == 0 for r in rules.rules)


def test_the_image_installs_dependencies_before_it_copies_the_code() -> None:
    lines = dockerfile_lines()
    install = next(i for i, line in enumerate(lines) if "-c constraints.txt" in line)
    copies_before = [line for line in lines[:install] if line.startswith("COPY ")]
    assert copies_before == ["COPY pyproject.toml constraints.txt ./"]
    code = [i for i, line in enumerate(lines) if re.match(r"COPY (worker|tasks|migrations) ", line)]
    assert len(code) == 3 and min(code) > install
    assert any(line.startswith("RUN pip install --no-deps .") for line in lines[min(code) :])


def test_every_thankly_process_counts_into_one_shared_metrics_folder() -> None:
    """/metrics is answered by the API but counts what workers and the scheduler did too:
    prometheus-client's multi-process mode needs one folder they all write to."""
    folder = None
    for name in ("api", "worker", "scheduler"):
        service = SERVICES[name]
        folder = service["environment"]["PROMETHEUS_MULTIPROC_DIR"]
        assert f"metrics:{folder}" in service["volumes"], name
    assert "metrics" in COMPOSE["volumes"]
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert (
        f"mkdir -p /app/var {folder}" in dockerfile
        and f"chown thankly /app/var {folder}" in dockerfile
    )
