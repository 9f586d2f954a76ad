"""One log format for Thankly's, uvicorn's and Celery's lines; JSON on request; no bodies."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from tests.conftest import RULES_FILE, SAMPLES, TEMPLATES, free_port
from tests.helpers import event_doc, ingest_doc, run_worker, thankly_in_process
from worker.clock import FixedClock
from worker.logs import setup_logging
from worker.runtime import Runtime

TEXT_LINE = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (DEBUG|INFO|WARNING|ERROR|CRITICAL) "
    r"(?P<logger>[\w.]+): (?P<message>.+)$"
)
SOURCES = ("worker.delivery.send", "uvicorn.error", "celery.worker.consumer")


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """setup_logging rewires global loggers; put them back for the next test."""
    root = logging.getLogger()
    saved_root = (list(root.handlers), root.level)
    names = ("uvicorn", "uvicorn.error", "uvicorn.access", "celery", "celery.task")
    saved = {
        n: (list(logging.getLogger(n).handlers), logging.getLogger(n).propagate) for n in names
    }
    yield
    logging.captureWarnings(False)
    root.handlers[:] = saved_root[0]
    root.setLevel(saved_root[1])
    for name, (handlers, propagate) in saved.items():
        logging.getLogger(name).handlers[:] = handlers
        logging.getLogger(name).propagate = propagate


@pytest.mark.usefixtures("restore_logging")
def test_every_source_prints_time_level_logger_and_message_once() -> None:
    # uvicorn installs its own handler and stops propagation when it configures logging.
    uvicorn_log = logging.getLogger("uvicorn.error")
    uvicorn_log.addHandler(logging.StreamHandler(io.StringIO()))
    uvicorn_log.propagate = False
    stream = io.StringIO()
    setup_logging("INFO", "text", stream)
    for name in SOURCES:
        logging.getLogger(name).info("hello from %s", name)
    lines = stream.getvalue().splitlines()
    assert len(lines) == len(SOURCES)
    for name, line in zip(SOURCES, lines, strict=True):
        match = TEXT_LINE.match(line)
        assert match is not None, line
        assert (match["logger"], match["message"]) == (name, f"hello from {name}")


@pytest.mark.usefixtures("restore_logging")
def test_celery_task_chatter_is_debug() -> None:
    stream = io.StringIO()
    setup_logging("INFO", "text", stream)
    logging.getLogger("celery.worker.strategy").info("Task thankly.send_letter[x] received")
    logging.getLogger("celery.app.trace").info("Task thankly.send_letter[x] succeeded in 0.1s")
    logging.getLogger("celery.app.trace").error("Task thankly.send_letter[y] raised")
    assert [TEXT_LINE.match(line)["message"] for line in stream.getvalue().splitlines()] == [  # type: ignore[index]
        "Task thankly.send_letter[y] raised"
    ]

    stream = io.StringIO()
    setup_logging("DEBUG", "text", stream)
    logging.getLogger("celery.app.trace").info("Task thankly.send_letter[x] succeeded in 0.1s")
    assert " DEBUG celery.app.trace: Task thankly.send_letter[x] succeeded" in stream.getvalue()


@pytest.mark.usefixtures("restore_logging")
def test_the_access_log_never_shows_a_secret_in_a_webhook_url() -> None:
    """amoCRM authenticates by a secret in the webhook's URL; uvicorn logs each URL."""
    stream = io.StringIO()
    setup_logging("DEBUG", "text", stream)
    secret = "Zq8wV1xY2kP9mN3bR7tL5cF0"
    access = logging.getLogger("uvicorn.access")
    args = ("10.0.0.7:5123", "POST", f"/webhooks/amocrm?secret={secret}&x=1", "1.1", 202)
    access.info('%s - "%s %s HTTP/%s" %d', *args)
    access.info(
        '%s - "%s %s HTTP/%s" %d', "10.0.0.7:5124", "GET", f"/x?api_token={secret}", "1.1", 404
    )
    text = stream.getvalue()
    assert secret not in text
    assert '"POST /webhooks/amocrm?secret=***&x=1 HTTP/1.1" 202' in text
    assert "/x?api_token=***" in text


@pytest.mark.usefixtures("restore_logging")
def test_json_format_is_one_object_per_line_with_the_exception() -> None:
    stream = io.StringIO()
    setup_logging("INFO", "json", stream)
    logging.getLogger("uvicorn.error").info("multi\nline")
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("worker.delivery.send").exception("letter #7 failed")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2  # the newline in a message does not split an entry
    first, second = (json.loads(line) for line in lines)
    assert set(first) == {"time", "level", "logger", "message"}
    assert (first["logger"], first["message"]) == ("uvicorn.error", "multi\nline")
    assert (second["level"], second["message"]) == ("ERROR", "letter #7 failed")
    assert "ValueError: boom" in second["exception"]


def test_the_sent_line_names_letter_and_domain_not_the_address(
    runtime: Runtime, clock: FixedClock, caplog: pytest.LogCaptureFixture
) -> None:
    [letter] = ingest_doc(runtime, event_doc("feedback.logged", "anna@example.org"), "evt_log")
    with caplog.at_level(logging.INFO, logger="worker.delivery.send"):
        run_worker(runtime, clock, rounds=2, step=timedelta(days=4))
    sent = [r.getMessage() for r in caplog.records if r.name == "worker.delivery.send"]
    assert sent == [
        f"sent letter {letter.id} feedback_logged/en to …@example.org {letter.message_id}"
    ]
    assert "anna" not in caplog.text


@pytest.mark.slow
def test_a_real_thankly_run_logs_only_json_lines(tmp_path: Path) -> None:
    """Every line on stderr, whichever library wrote it, parses as one JSON object."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("THANKLY_")} | {
        "THANKLY_VAR_DIR": str(tmp_path / "var"),
        "THANKLY_RULES_FILE": str(RULES_FILE.parent / "rules.demo.yaml"),
        "THANKLY_TEMPLATES_DIR": str(TEMPLATES),
        "THANKLY_SWEEP_INTERVAL_SECONDS": "1",
        "THANKLY_LOG_FORMAT": "json",
    }
    command = [sys.executable, "-m", "worker.cli"]
    with (tmp_path / "stderr").open("w") as stderr:
        proc = subprocess.Popen(
            [*command, "run", "--port", str(port)],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        try:
            deadline = time.monotonic() + 30
            while not _answers(f"http://127.0.0.1:{port}/readyz"):
                assert time.monotonic() < deadline and proc.poll() is None, "did not start"
                time.sleep(0.2)
            subprocess.run(
                [*command, "event", "send", str(SAMPLES / "deal_closed.ru.json"), "--now"],
                env=env,
                cwd=tmp_path,
                check=True,
                capture_output=True,
                timeout=30,
            )
            # The sent line is logged once the letter's status is committed.
            while "sent letter" not in (tmp_path / "stderr").read_text():
                assert time.monotonic() < deadline + 30, "no letter was sent"
                time.sleep(0.2)
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=30)
    entries = [json.loads(line) for line in (tmp_path / "stderr").read_text().splitlines()]
    loggers = {entry["logger"] for entry in entries}
    assert {"worker.cli", "uvicorn.error", "worker.delivery.send"} <= loggers
    assert any(name.startswith("celery.") for name in loggers)
    assert all(entry["level"] != "DEBUG" for entry in entries)
    assert not any("received" in e["message"] and e["logger"].startswith("celery") for e in entries)
    assert not any(e["logger"] == "uvicorn.access" for e in entries)  # access log is off
    [sent] = [e["message"] for e in entries if e["message"].startswith("sent letter")]
    assert re.fullmatch(r"sent letter 1 deal_closed/ru to …@\S+ <[0-9a-f]+@localhost>", sent)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_an_unknown_log_format_is_one_line_and_exit_2(tmp_path: Path) -> None:
    env = {"THANKLY_LOG_FORMAT": "xml", "THANKLY_VAR_DIR": str(tmp_path / "var")}
    result = thankly_in_process("db", "upgrade", env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "error: THANKLY_LOG_FORMAT: Input should be 'text' or 'json'"
    ]
    assert not (tmp_path / "var").exists()


def test_the_log_format_setting_ignores_case() -> None:
    from worker.settings import Settings

    assert Settings.model_validate({"log_format": " JSON "}).log_format == "json"
