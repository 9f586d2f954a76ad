"""The CLI as a newcomer meets it: tables at 80 columns, honest help, and configuration
mistakes that stop every process with one line instead of a traceback."""

from __future__ import annotations

import json
import re
import subprocess
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
import typer
from rich.console import Console
from sqlalchemy import update
from typer.testing import CliRunner

from tests.conftest import SAMPLES
from tests.helpers import ingest_doc, run_thankly, thankly_in_process
from worker.cli import letters as cli_letters
from worker.cli.main import app
from worker.models import Letter
from worker.runtime import Runtime
from worker.settings import load_settings, misspelt_variables, setting_names

runner = CliRunner()
FEEDBACK: dict[str, Any] = json.loads((SAMPLES / "feedback_logged.de.json").read_text())
SHORT_TIME = re.compile(r"\b\d\d-\d\d \d\d:\d\d\b")


# --- tables ------------------------------------------------------------------------------


def _letters(runtime: Runtime, count: int) -> list[int]:
    ids = []
    for n in range(count):
        doc = json.loads(json.dumps(FEEDBACK))
        doc["data"]["contact"]["email"] = f"someone.with.a.long.name{n}@subdomain.example.org"
        [letter] = ingest_doc(runtime, doc, f"evt_wide_{n}")
        ids.append(letter.id)
    with runtime.session_factory.begin() as session:
        session.execute(
            update(Letter)
            .where(Letter.id == ids[0])
            .values(status="failed", last_error="connect: 421 4.7.0 try again later, please")
        )
    return ids


def test_letters_list_fits_80_columns(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = _letters(runtime, 3)
    monkeypatch.setenv("THANKLY_DATABASE_URL", runtime.engine.url.render_as_string(False))
    monkeypatch.setattr(cli_letters, "out", Console(width=80, highlight=False, soft_wrap=True))
    result = runner.invoke(app, ["letters", "list", "--limit", "2"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert len([line for line in lines if set(line.strip()) == {"─"}]) == 1  # one header rule
    header = lines[0]
    assert "due (UTC)" in header and "error" in header
    rows = [line for line in lines if re.match(r"\d+ +[a-z]+ +feedback_logged/de ", line)]
    # Newest first, and the cells that matter are whole on the row's first line.
    assert [int(r.split()[0]) for r in rows] == [ids[2], ids[1]]
    assert all(SHORT_TIME.search(r) and "feedback_logged/de" in r for r in rows)
    assert lines[-1] == "3 letter(s), page 1 of 2; next: --page 2"
    oldest = runner.invoke(app, ["letters", "list", "--limit", "2", "--page", "2"]).stdout
    [row] = [
        line for line in oldest.splitlines() if re.match(r"\d+ +[a-z]+ +feedback_logged/de ", line)
    ]
    assert row.split()[:2] == [str(ids[0]), "failed"] and row.rstrip().endswith("connect")


def test_a_timeline_uses_short_utc_times(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    [letter_id, *_] = _letters(runtime, 1)
    monkeypatch.setenv("THANKLY_DATABASE_URL", runtime.engine.url.render_as_string(False))
    monkeypatch.setattr(cli_letters, "out", Console(width=80, highlight=False, soft_wrap=True))
    shown = runner.invoke(app, ["letters", "show", str(letter_id)]).stdout
    assert "at (UTC)" in shown and re.search(r"\d\d-\d\d \d\d:\d\d:\d\d +planned", shown)
    assert "+00:00" not in shown


# --- help --------------------------------------------------------------------------------


def _command_paths(command: Any, prefix: list[str]) -> list[list[str]]:
    paths = [prefix]
    for name, sub in getattr(command, "commands", {}).items():
        paths += _command_paths(sub, [*prefix, name])
    return paths


def test_help_has_no_type_tags_and_shows_defaults() -> None:
    every = _command_paths(typer.main.get_command(app), [])
    assert len(every) > 20
    for path in every:
        result = runner.invoke(app, [*path, "-h"], env={"COLUMNS": "100"})
        assert result.exit_code == 0, path
        assert not re.search(r"<(bool|str|int|float|list\[\w+\]|Path)>", result.stdout), path
    listing = runner.invoke(app, ["letters", "list", "--help"], env={"COLUMNS": "100"}).stdout
    assert "[default: 50]" in listing and "INTEGER" in listing
    assert re.search(r"--json +Machine-readable", listing)  # a flag takes no value
    rules = runner.invoke(app, ["rules", "check", "-h"], env={"COLUMNS": "100"}).stdout
    assert "default: THANKLY_RULES_FILE" in rules  # not swallowed as Rich markup


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == f"thankly {version('thankly')}"


# --- configuration mistakes --------------------------------------------------------------


def _run(
    args: list[str], env: dict[str, str], cwd: Path | None = None, *, process: bool = False
) -> subprocess.CompletedProcess[str]:
    """In this process unless `process`: each family keeps one test that starts `thankly`
    as a user does, which proves the entry point, the exit status and that nothing else
    reaches a real process's stderr (here: `run` on a bad setting, `db upgrade` outside
    the project, a misspelt variable and a short secret)."""
    if process:
        return run_thankly(*args, env=env, cwd=cwd)
    return thankly_in_process(*args, env=env, cwd=cwd)


def _one_line_exit_2(result: subprocess.CompletedProcess[str], starts: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith(f"error: {starts}"), result.stderr


MISTAKES = [
    ("THANKLY_LOG_LEVEL", "verbose", "THANKLY_LOG_LEVEL: 'verbose' is not a log level; use one"),
    ("THANKLY_MAIL_FROM", "Thankly team", "THANKLY_MAIL_FROM: 'Thankly team' is not an address"),
    ("THANKLY_SECRET_KEY", "too-short", "THANKLY_SECRET_KEY: must be at least 32 characters"),
    ("THANKLY_ADMIN_TOKEN", "admin", "THANKLY_ADMIN_TOKEN: must be at least 24 characters"),
    (
        "THANKLY_DATABASE_URL",
        "postgresql+psycopg2://db/thankly",
        "THANKLY_DATABASE_URL: postgresql+psycopg2:// needs a driver",
    ),
]


@pytest.mark.parametrize(("variable", "value", "starts"), MISTAKES)
def test_each_configuration_mistake_is_one_line_and_exit_2(
    tmp_path: Path, variable: str, value: str, starts: str
) -> None:
    result = _run(["db", "upgrade"], {"THANKLY_VAR_DIR": str(tmp_path), variable: value})
    _one_line_exit_2(result, starts)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", [["run"], ["api"], ["worker"], ["scheduler"], ["stats"]])
def test_every_process_stops_on_a_bad_setting(tmp_path: Path, command: list[str]) -> None:
    env = {"THANKLY_VAR_DIR": str(tmp_path), "THANKLY_LOG_LEVEL": "loud"}
    _one_line_exit_2(_run(command, env, process=command == ["run"]), "THANKLY_LOG_LEVEL:")


def test_a_short_secret_says_how_to_make_one(tmp_path: Path) -> None:
    result = _run(
        ["db", "upgrade"],
        {"THANKLY_VAR_DIR": str(tmp_path), "THANKLY_SECRET_KEY": "x"},
        process=True,
    )
    command = re.search(r"make one with (.+)$", result.stderr.strip())
    assert command is not None
    made = subprocess.run(command.group(1), shell=True, capture_output=True, text=True, check=True)
    assert len(made.stdout.strip()) >= 32


@pytest.mark.parametrize("scheme", ["postgres", "postgresql"])
def test_plain_postgres_urls_use_psycopg_3(monkeypatch: pytest.MonkeyPatch, scheme: str) -> None:
    monkeypatch.setenv("THANKLY_DATABASE_URL", f"{scheme}://thankly:pw@db:5432/thankly")
    assert load_settings().database_url == "postgresql+psycopg://thankly:pw@db:5432/thankly"


def test_a_misspelt_variable_is_a_warning_naming_the_closest(tmp_path: Path) -> None:
    env = {
        "THANKLY_VAR_DIR": str(tmp_path),
        "THANKLY_SMTP_UR": "smtp://mail:25",
        "THANKLY_TEST_ANYTHING": "1",  # the suite's own variables are left alone
    }
    result = _run(["db", "upgrade"], env, process=True)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip().splitlines() == [
        "warning: THANKLY_SMTP_UR is not a Thankly setting; did you mean THANKLY_SMTP_URL?"
    ]


def test_valid_names_follow_the_settings_fields() -> None:
    names = setting_names()
    assert "THANKLY_DATABASE_URL" in names and "THANKLY_SECRET_KEY" in names
    assert misspelt_variables(dict.fromkeys(names, "x")) == []
    assert misspelt_variables({"THANKLY_NOTHING_LIKE_IT": "1"}) == [
        "THANKLY_NOTHING_LIKE_IT is not a Thankly setting"
    ]
    # The brand's variables are settings too, and their typos are caught like the rest.
    assert "THANKLY_BRAND_SIGNER_NAME" in names
    assert misspelt_variables({"THANKLY_BRAND_SIGNR_NAME": "x"}) == [
        "THANKLY_BRAND_SIGNR_NAME is not a Thankly setting; did you mean THANKLY_BRAND_SIGNER_NAME?"
    ]


@pytest.mark.parametrize("command", [["letters", "list"], ["db", "upgrade"], ["run"]])
def test_outside_the_project_it_says_where_it_looked_and_writes_nothing(
    tmp_path: Path, command: list[str]
) -> None:
    result = _run(command, {}, cwd=tmp_path, process=command == ["db", "upgrade"])
    _one_line_exit_2(result, "no Thankly project here: looked for config/rules.yaml and")
    assert str(tmp_path) in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_event_send_needs_no_project_only_a_secret(tmp_path: Path) -> None:
    """Posting to a Thankly elsewhere reads no project file and creates none."""
    result = _run(
        [
            "event",
            "send",
            "--type",
            "deal.closed",
            "--email",
            "a@example.org",
            "--url",
            "http://127.0.0.1:9/webhooks/generic",
        ],
        {"THANKLY_WEBHOOK_SECRETS": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"},
        cwd=tmp_path,
    )
    assert result.returncode == 1, result.stderr
    assert "cannot reach http://127.0.0.1:9/webhooks/generic" in result.stderr
    assert "no Thankly project" not in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_mistyped_worker_pool_lists_the_valid_ones(tmp_path: Path) -> None:
    result = _run(["worker", "--pool", "gevnt"], {"THANKLY_VAR_DIR": str(tmp_path)})
    _one_line_exit_2(result, "--pool 'gevnt' is not one of: prefork, threads, solo")


@pytest.mark.parametrize(
    "command", [["letters", "show"], ["letters", "preview"], ["letters", "cancel"]]
)
def test_an_id_past_bigint_is_a_usage_error(command: list[str]) -> None:
    result = CliRunner().invoke(app, [*command, str(2**63)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "Invalid value" in result.stderr and str(2**63 - 1) in result.stderr
