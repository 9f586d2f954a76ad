"""Small builders shared by tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, func, select, text
from sqlalchemy import event as sa_event
from sqlalchemy.orm import Session, sessionmaker

from worker.intake.inbox import accept
from worker.intake.ingest import ingest
from worker.intake.signatures import signed_headers
from worker.models import Event, InboxItem, Letter
from worker.runtime import Runtime

# `thankly` as a user runs it, in a process of its own, with this checkout's code.
THANKLY = [sys.executable, "-m", "worker.cli"]


def run_thankly(
    *args: str, env: Mapping[str, str] | None = None, cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """`thankly ARGS` in a new process. Its THANKLY_* settings are exactly those in `env`:
    the test process's own are dropped, so a developer's shell cannot change the result."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("THANKLY_")}
    return subprocess.run(
        [*THANKLY, *args],
        env=base | dict(env or {}),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def thankly_in_process(
    *args: str, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """`thankly ARGS` as `run_thankly` runs it, in this process (a new one costs a second
    of start-up): the same THANKLY_* settings (exactly those in `env`), folder, exit status,
    stdout and stderr, and an uncaught exception is exit 1 with its traceback on stderr, as
    Python prints it. For what a command does and says; the entry point, and a process's
    own stderr, are `run_thankly`'s (each command family keeps tests that use it). What a
    command changes in this process (environment, folder, logging, the runtime, the
    warn-once flag for misspelt variables) is put back afterwards. Its output is not
    coloured, as a process writing to pipes is not, even when pytest runs on a terminal."""
    import logging
    import traceback
    import warnings

    from typer.testing import CliRunner

    from worker import runtime as process_runtime
    from worker.cli import common
    from worker.cli.main import app
    from worker.logs import OWN_HANDLER_LOGGERS

    saved_env, saved_cwd = dict(os.environ), Path.cwd()
    loggers = [logging.getLogger(), *map(logging.getLogger, OWN_HANDLER_LOGGERS)]
    saved_logging = [(lg, list(lg.handlers), lg.level, lg.propagate) for lg in loggers]
    saved_showwarning, saved_warned = warnings.showwarning, common._warned
    saved_runtime = process_runtime._current
    # The consoles chose colours at import, when pytest -s may have had a terminal.
    saved_colours = [(console, console._color_system) for console in (common.out, common.err)]
    for console, _ in saved_colours:
        console._color_system = None
    for key in [k for k in os.environ if k.startswith("THANKLY_")]:
        del os.environ[key]
    os.environ.update(env or {})
    common._warned = False  # a new process warns about misspelt variables once, afresh
    try:
        if cwd is not None:
            os.chdir(cwd)
        result = CliRunner().invoke(app, list(args), prog_name="thankly")
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
        for lg, handlers, level, propagate in saved_logging:
            lg.handlers[:] = handlers
            lg.setLevel(level)
            lg.propagate = propagate
        logging.captureWarnings(False)
        warnings.showwarning = saved_showwarning
        common._warned = saved_warned
        for console, colours in saved_colours:
            console._color_system = colours
        if process_runtime._current is not saved_runtime:
            process_runtime._current.engine.dispose()  # type: ignore[union-attr]
            process_runtime.set_runtime(saved_runtime)
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += "".join(traceback.format_exception(result.exception))
    return subprocess.CompletedProcess(["thankly", *args], result.exit_code, result.stdout, stderr)


def event_doc(event_type: str = "deal.closed", email: str = "anna@example.org") -> dict[str, Any]:
    return {
        "type": event_type,
        "timestamp": "2026-11-20T10:00:00Z",
        "data": {"contact": {"email": email, "first_name": "Anna"}},
    }


def signed(
    body: bytes | dict[str, Any], secret: str, at: datetime, msg_id: str = "evt_1"
) -> tuple[bytes, dict[str, str]]:
    raw = json.dumps(body).encode() if isinstance(body, dict) else body
    headers = signed_headers(secret, msg_id, int(at.timestamp()), raw)
    headers["content-type"] = "application/json"
    return raw, headers


def count_rows(factory: sessionmaker[Session]) -> tuple[int, int]:
    """(inbox rows, events) — what a rejected request must leave unchanged."""
    with factory() as session:
        inbox = session.scalar(select(func.count()).select_from(InboxItem)) or 0
        events = session.scalar(select(func.count()).select_from(Event)) or 0
    return inbox, events


def ingest_doc(runtime: Runtime, doc: dict[str, Any], msg_id: str) -> list[Letter]:
    """Push one event through accept → ingest → planning, as the task would; its letters."""
    body = json.dumps(doc).encode()
    accepted = accept(runtime.session_factory, "generic", msg_id, body, runtime.clock.now())
    result = ingest(runtime.session_factory, accepted.inbox_id, runtime.clock, runtime.planner)
    with runtime.session_factory() as session:
        return list(
            session.scalars(
                select(Letter).where(Letter.event_id == result.event_id).order_by(Letter.id)
            )
        )


def all_letters(runtime: Runtime) -> list[Letter]:
    with runtime.session_factory() as session:
        return list(session.scalars(select(Letter).order_by(Letter.id)))


def write_letter(root: Path, name: str, subject: str, body: str = "x", html: str = "x") -> None:
    """A throwaway letter `name` in `en` under `root` (for template error tests)."""
    folder = root / name / "en"
    folder.mkdir(parents=True)
    (folder / "subject.txt").write_text(subject)
    (folder / "body.txt").write_text(body)
    (folder / "body.html").write_text(html)


def run_worker(
    runtime: Runtime, clock: Any, rounds: int, step: timedelta = timedelta(seconds=1)
) -> list[tuple[str, int, str]]:
    """The scheduler tick and the tasks it enqueues, run in-process as a worker would, with
    the clock moved `step` after each round. Returns (task, id, outcome) per task run."""
    from worker.jobs import run_enqueued
    from worker.queue import INGEST_INBOX, RecordingDispatcher
    from worker.scheduling import tick

    dispatcher = runtime.dispatcher
    assert isinstance(dispatcher, RecordingDispatcher)
    done = []
    for _ in range(rounds):
        dispatcher.sent.clear()
        tick.tick(runtime)
        # Inbox rows re-enqueued by the sweeper are the intake tests' business, not this loop's.
        due = [(task, ids) for task, ids in dispatcher.sent if task != INGEST_INBOX]
        done += run_enqueued(runtime, due)
        clock.set(clock.now() + step)
    return done


@contextmanager
def recorded_statements(runtime: Runtime) -> Iterator[list[str]]:
    """Every SQL statement the runtime's engine runs inside the block, in order."""
    seen: list[str] = []

    def keep(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    sa_event.listen(runtime.engine, "before_cursor_execute", keep)
    try:
        yield seen
    finally:
        sa_event.remove(runtime.engine, "before_cursor_execute", keep)


def in_monday_opening(due: datetime, zone: str = "Europe/Berlin") -> bool:
    """Due in the shipped rules' opening spread: Monday 2026-11-23, 09:00 to 11:00 local
    (config/rules.yaml spreads letters moved to an opening over `spread: 2h`)."""
    from zoneinfo import ZoneInfo

    opening = datetime(2026, 11, 23, 9, 0, tzinfo=ZoneInfo(zone))
    return opening <= due <= opening + timedelta(hours=2)


def terminate_connections(url: str) -> int:
    """End every session on the database (as a restart or failover would)."""
    engine = create_engine(url)
    with engine.begin() as conn:
        ended = conn.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        ).scalar_one()
    engine.dispose()
    return int(ended)
