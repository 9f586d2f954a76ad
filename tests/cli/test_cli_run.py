"""The README's demo path, as a user runs it: `thankly run`, then `thankly event send`."""

from __future__ import annotations

import email
import email.policy
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import RULES_FILE, SAMPLES, TEMPLATES, free_port
from tests.helpers import THANKLY, run_thankly, thankly_in_process

pytestmark = pytest.mark.slow


def thankly_env(var_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("THANKLY_")}
    env["THANKLY_VAR_DIR"] = str(var_dir)
    env["THANKLY_SWEEP_INTERVAL_SECONDS"] = "1"
    env["THANKLY_RULES_FILE"] = str(RULES_FILE)
    env["THANKLY_TEMPLATES_DIR"] = str(TEMPLATES)
    return env


def wait_ready(url: str, proc: subprocess.Popen[str], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    pytest.fail(f"thankly run did not become ready:\n{proc.communicate()[0]}")


@dataclass
class Instance:
    """`thankly run` in a subprocess, as a user starts it."""

    url: str
    proc: subprocess.Popen[str]
    output: str | None = None

    def stop(self) -> str:
        """Ctrl-C, then everything it printed (idempotent)."""
        if self.output is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.output = self.proc.communicate(timeout=30)[0]
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.output = self.proc.communicate()[0]
        return self.output


@contextmanager
def thankly_run(env: dict[str, str], cwd: Path, port: int | None = None) -> Iterator[Instance]:
    port = port or free_port()
    proc = subprocess.Popen(
        [*THANKLY, "run", "--port", str(port)],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    instance = Instance(f"http://127.0.0.1:{port}", proc)
    try:
        wait_ready(instance.url, proc)
        yield instance
    finally:
        instance.stop()


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[Instance, Path]]:
    var_dir = tmp_path / "var"
    with thankly_run(thankly_env(var_dir), tmp_path) as instance:
        yield instance, var_dir


def send(var_dir: Path, *args: str, process: bool = True) -> subprocess.CompletedProcess[str]:
    """`thankly event send ARGS` in a process of its own (as a user in a second terminal),
    or in this one when the test is about what the command says, not the process."""
    if not process:
        return thankly_in_process("event", "send", *args, env=thankly_env(var_dir))
    return run_thankly("event", "send", *args, env=thankly_env(var_dir), timeout=30)


def events_in(var_dir: Path, timeout: float = 15) -> list[tuple[str, str]]:
    deadline = time.monotonic() + timeout
    rows: list[tuple[str, str]] = []
    while time.monotonic() < deadline:
        with sqlite3.connect(var_dir / "thankly.db") as conn:
            rows = conn.execute("SELECT external_id, type FROM events ORDER BY id").fetchall()
        if rows:
            return rows
        time.sleep(0.2)
    return rows


def test_run_then_send_stores_the_event(running: tuple[Instance, Path]) -> None:
    instance, var_dir = running
    url = instance.url
    target = f"{url}/webhooks/generic"
    sample = str(SAMPLES / "deal_closed.ru.json")

    first = send(var_dir, sample, "--url", target, "--id", "evt_demo")
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == "202 accepted evt_demo"
    assert events_in(var_dir) == [("evt_demo", "deal.closed")]

    # The first send was a process of its own; what the instance answers to the next ones
    # is the point, so they run in this process (a second of start-up each).
    again = send(var_dir, sample, "--url", target, "--id", "evt_demo", process=False)
    assert again.stdout.strip() == "200 duplicate evt_demo"

    quick = send(
        var_dir,
        *("--type", "feedback.logged", "--email", "sam@example.com", "--url", target),
        process=False,
    )
    assert quick.returncode == 0 and quick.stdout.startswith("202 accepted evt_")

    bad = send(
        var_dir,
        *("--type", "deal.closed", "--email", "not-an-email", "--url", target),
        process=False,
    )
    assert bad.returncode == 1
    assert "422" in bad.stderr and "data.contact.email" in bad.stderr

    output = instance.stop()
    secret = (var_dir / "webhook_secret").read_text().strip()
    assert f"Thankly is running at {url}" in output
    assert secret in output  # printed once so the user can configure a CRM...
    assert output.count(secret) == 1  # ...and never logged again
    assert "thankly event send --type deal.closed" in output
    assert "bin/thankly" not in output  # one spelling, as in the README: activate, then `thankly`


def test_send_without_a_running_instance_says_so(tmp_path: Path) -> None:
    var_dir = tmp_path / "var"
    var_dir.mkdir()
    (var_dir / "webhook_secret").write_text("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n")
    result = send(
        var_dir,
        "--type",
        "deal.closed",
        "--email",
        "a@example.com",
        "--url",
        f"http://127.0.0.1:{free_port()}/webhooks/generic",
    )
    assert result.returncode == 1
    assert "cannot reach" in result.stderr and "thankly run" in result.stderr


def test_send_needs_a_file_or_type_and_email(tmp_path: Path) -> None:
    result = send(tmp_path, "--type", "deal.closed", process=False)
    assert result.returncode == 2 and "--type and --email" in result.stderr
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    result = send(tmp_path, str(broken), process=False)
    assert result.returncode == 2 and "not valid JSON" in result.stderr


# In processes of their own: how a supervisor sees each production process refuse (exit 2,
# the reason on stderr). The refusals further down are what the commands check, and run in
# this process (tests.helpers.thankly_in_process); `run` keeps its taken-port test.
@pytest.mark.parametrize("command", [["api"], ["worker"], ["scheduler"]])
def test_production_processes_refuse_to_start_without_a_broker(
    tmp_path: Path, command: list[str]
) -> None:
    result = run_thankly(*command, env=thankly_env(tmp_path), timeout=30)
    assert result.returncode == 2
    assert "THANKLY_BROKER_URL is not set" in result.stderr


def test_run_refuses_to_start_on_a_broken_rules_file(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES_FILE.read_text().replace("delay: 24h}", "delay: 24 hours}", 1))
    env = thankly_env(tmp_path / "var") | {"THANKLY_RULES_FILE": str(rules)}
    result = thankly_in_process("run", "--port", str(free_port()), env=env)
    assert result.returncode == 2
    assert f"{rules}:" in result.stderr and "'24 hours' is not a duration" in result.stderr
    assert "fix them and start again" in result.stderr


def test_an_event_sent_with_a_zero_delay_rule_arrives_at_the_smtp_server(tmp_path: Path) -> None:
    """The issue's demo: `thankly event send` → `thankly run` → a real SMTP server."""
    from tests.smtp_server import smtp_server

    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "defaults: {timezone: Europe/Berlin, locale: en}\n"
        "rules:\n"
        "  - {name: feedback-now, on: feedback.logged, letter: feedback_logged, delay: 0s}\n"
    )
    with smtp_server() as (script, smtp_port):
        env = thankly_env(tmp_path / "var") | {
            "THANKLY_RULES_FILE": str(rules),
            "THANKLY_SMTP_URL": f"smtp://127.0.0.1:{smtp_port}",
            "THANKLY_MAIL_FROM": "Team <team@shop.example>",
        }
        with thankly_run(env, tmp_path) as instance:
            url = instance.url
            sample = str(SAMPLES / "feedback_logged.de.json")
            sent = subprocess.run(
                [
                    *THANKLY,
                    "event",
                    "send",
                    sample,
                    "--now",  # the sample's own date may be past max_event_age
                    "--url",
                    f"{url}/webhooks/generic",
                    "--id",
                    "evt_mail",
                ],
                env=env,
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            assert sent.returncode == 0, sent.stderr
            deadline = time.monotonic() + 30
            while not script.delivered and time.monotonic() < deadline:
                time.sleep(0.2)
    assert len(script.delivered) == 1, instance.output
    delivered = email.message_from_bytes(script.raw[0], policy=email.policy.default)
    assert delivered["Subject"] == "Vielen Dank für Ihre Rückmeldung"
    assert delivered["From"] == "Jonas Weber <team@shop.example>"
    with sqlite3.connect(tmp_path / "var" / "thankly.db") as conn:
        status, message_id = conn.execute("SELECT status, message_id FROM letters").fetchone()
    assert (status, message_id) == ("sent", delivered["Message-ID"])


def test_a_demo_letter_opened_in_a_browser_reaches_the_crm_once(tmp_path: Path) -> None:
    """Issue 5's acceptance: send, load the letter's HTML as a browser would, and the open
    shows in `thankly letters show` and reaches the http CRM exactly once."""
    from tests.crm_server import CRM_SECRET, crm_server

    var = tmp_path / "var"
    port = free_port()
    browser = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
    with crm_server() as (crm, crm_url):
        env = thankly_env(var) | {
            "THANKLY_RULES_FILE": str(RULES_FILE.parent / "rules.demo.yaml"),
            "THANKLY_PUBLIC_URL": f"http://127.0.0.1:{port}",
            "THANKLY_CRM": "http",
            "THANKLY_CRM_URL": crm_url,
            "THANKLY_CRM_SECRET": CRM_SECRET,
            "THANKLY_MACHINE_OPEN_SECONDS": "0",
        }
        with thankly_run(env, tmp_path, port) as instance:
            sample = str(SAMPLES / "referral_made.pl.json")
            subprocess.run(
                [*THANKLY, "event", "send", sample, "--now"],
                env=env,
                check=True,
                capture_output=True,
                timeout=30,
            )
            deadline = time.monotonic() + 30
            while not list((var / "outbox").glob("[!.]*.eml")) and time.monotonic() < deadline:
                time.sleep(0.2)
            [eml] = list((var / "outbox").glob("[!.]*.eml"))
            message = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
            html_part = message.get_body(preferencelist=("html",))
            assert html_part is not None
            pixel = re.search(r'<img src="([^"]+\.gif)"', str(html_part.get_content()))
            assert pixel is not None and pixel.group(1).startswith(instance.url)
            for _ in range(3):  # reloading the page is still one open for the CRM
                answer = httpx.get(pixel.group(1), headers={"user-agent": browser})
                assert answer.status_code == 200
            deadline = time.monotonic() + 30
            while len(crm.accepted) < 2 and time.monotonic() < deadline:
                time.sleep(0.2)
            shown = thankly_in_process("letters", "show", "1", "--json", env=env)
            assert shown.returncode == 0, shown.stderr
    story = json.loads(shown.stdout)
    assert story["status"] == "sent", instance.output
    assert story["opens"] == {"human": 3, "machine": 0}
    assert sorted(v["type"] for v in crm.accepted.values()) == ["email.opened", "email.sent"]
    assert crm.rejected == [] and max(crm.posts.values()) == 1


def test_the_worker_refuses_to_start_without_a_secret_key(tmp_path: Path) -> None:
    env = thankly_env(tmp_path) | {
        "THANKLY_BROKER_URL": "redis://127.0.0.1:6379/11",
        "THANKLY_MAIL_FROM": "Shop <thanks@shop.example>",
    }
    result = thankly_in_process("worker", env=env)
    assert result.returncode == 2
    assert "THANKLY_SECRET_KEY is not set" in result.stderr


@pytest.mark.parametrize("command", ["worker", "api", "scheduler"])
def test_production_processes_refuse_the_placeholder_sender(tmp_path: Path, command: str) -> None:
    """Letters that really leave need a real From; the localhost default is for try-outs."""
    env = thankly_env(tmp_path) | {
        "THANKLY_BROKER_URL": "redis://127.0.0.1:6379/11",
        "THANKLY_SECRET_KEY": "s" * 40,
    }
    result = thankly_in_process(command, env=env)
    assert result.returncode == 2
    assert "THANKLY_MAIL_FROM is thankly@localhost" in result.stderr


def test_a_taken_port_is_one_line_and_no_banner(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as held:
        port = held.getsockname()[1]
        result = run_thankly(
            "run", "--port", str(port), env=thankly_env(tmp_path / "var"), cwd=tmp_path
        )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"error: port {port} is in use: stop the other process or use thankly run --port {port + 1}"
    ]
    assert "running" not in result.stdout
    assert not (tmp_path / "var" / "webhook_secret").exists()  # refused before any set-up


def test_links_and_event_send_follow_the_port_of_thankly_run(tmp_path: Path) -> None:
    """No THANKLY_PUBLIC_URL: the banner appears only once the port accepts connections,
    `event send` without --url reaches this port, and the letter's links point at it."""
    var = tmp_path / "var"
    port = free_port()
    env = thankly_env(var) | {"THANKLY_RULES_FILE": str(RULES_FILE.parent / "rules.demo.yaml")}
    proc = subprocess.Popen(
        [*THANKLY, "run", "--port", str(port)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    instance = Instance(f"http://127.0.0.1:{port}", proc)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if "Thankly is running" in line:
                break
        else:
            pytest.fail("thankly run exited without its banner")
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        wait_ready(instance.url, proc)
        sent = send(var, str(SAMPLES / "deal_closed.ru.json"), "--now")
        assert sent.returncode == 0, sent.stderr
        deadline = time.monotonic() + 30
        while not list((var / "outbox").glob("[!.]*.eml")) and time.monotonic() < deadline:
            time.sleep(0.2)
        [eml] = list((var / "outbox").glob("[!.]*.eml"))  # not the file still being written
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    message = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    plain, html = (message.get_body((kind,)) for kind in ("plain", "html"))
    assert plain is not None and html is not None
    links = re.findall(r"https?://[^\s\"'<>]+", plain.get_content())
    links += re.findall(r'(?:href|src)="(https?://[^"]+)"', html.get_content())
    ours = [link for link in links if "/u/" in link or "/t/" in link]
    assert ours and all(link.startswith(f"{instance.url}/") for link in ours), links
    assert (
        message["List-Unsubscribe"] is None or f"{instance.url}/u/" in message["List-Unsubscribe"]
    )
    assert not (var / "run_url").exists()  # a stopped instance leaves no address behind


def test_db_upgrade_says_what_it_did(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from alembic.script import ScriptDirectory
    from typer.testing import CliRunner

    from worker.cli.main import app
    from worker.migrate import alembic_config, upgrade

    database = f"sqlite:///{tmp_path / 'thankly.db'}"
    head = ScriptDirectory.from_config(alembic_config(database)).get_current_head()
    monkeypatch.setenv("THANKLY_DATABASE_URL", database)
    monkeypatch.setenv("THANKLY_RULES_FILE", str(RULES_FILE))
    monkeypatch.setenv("THANKLY_TEMPLATES_DIR", str(TEMPLATES))
    monkeypatch.setenv("THANKLY_VAR_DIR", str(tmp_path / "var"))

    def db_upgrade() -> str:
        result = CliRunner().invoke(app, ["db", "upgrade"])
        assert result.exit_code == 0, result.output
        return result.output.strip()

    assert db_upgrade() == f"created the schema (revision {head}) in {database}"
    assert db_upgrade() == f"the schema in {database} was up to date (revision {head})"

    older = f"sqlite:///{tmp_path / 'older.db'}"
    upgrade(older, "0003")
    monkeypatch.setenv("THANKLY_DATABASE_URL", older)
    assert db_upgrade() == f"upgraded the schema in {older} from revision 0003 to {head}"


def test_without_thankly_public_url_settings_follow_the_running_instance(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from worker.settings import RUN_URL_FILE, Settings

    assert Settings(var_dir=tmp_path).public_url == "http://127.0.0.1:8000"
    (tmp_path / RUN_URL_FILE).write_text("http://127.0.0.1:8123\n")
    assert Settings(var_dir=tmp_path).public_url == "http://127.0.0.1:8123"
    monkeypatch.setenv("THANKLY_PUBLIC_URL", "https://thanks.shop.example/")
    assert Settings(var_dir=tmp_path).public_url == "https://thanks.shop.example"


@pytest.mark.parametrize(
    ("half", "missing"),
    [
        ({"THANKLY_HUBSPOT_CLIENT_SECRET": "hs-secret"}, "THANKLY_HUBSPOT_TOKEN"),
        ({"THANKLY_PIPEDRIVE_WEBHOOK_USER": "u", "THANKLY_PIPEDRIVE_WEBHOOK_PASSWORD": "p"},
         "THANKLY_PIPEDRIVE_TOKEN"),
    ],
)  # fmt: skip
def test_the_api_refuses_a_half_connected_crm_in_one_line(
    tmp_path: Path, half: dict[str, str], missing: str
) -> None:
    """Webhooks that could be taken but never read would pile up: the API says so at start."""
    env = (
        thankly_env(tmp_path)
        | half
        | {
            "THANKLY_BROKER_URL": "redis://127.0.0.1:6379/11",
            "THANKLY_SECRET_KEY": "s" * 40,
            "THANKLY_MAIL_FROM": "Shop <thanks@shop.example>",
            "THANKLY_WEBHOOK_SECRETS": "whsec_" + "A" * 32,
        }
    )
    result = thankly_in_process("api", "--port", "0", env=env)
    assert result.returncode == 2, result.stderr
    assert missing in result.stderr and "Traceback" not in result.stderr
