"""`thankly run`, `api`, `worker` and `scheduler`: the long-running processes.

Each binds or checks what it needs before saying it is up (a taken port, a broken rules
file, a missing broker is one line and exit 2), then runs until told to stop.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import signal
import socket
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from worker.cli import letter_actions  # noqa: F401 - registers replay, cancel, send-now
from worker.cli.common import choice, err, fail, out
from worker.cli.common import settings_or_exit as _settings
from worker.settings import RUN_URL_FILE, Settings, redact_url

if TYPE_CHECKING:
    from worker.runtime import Runtime

# Named, not __name__: under `python -m worker.cli.main` that would be `__main__`.
log = logging.getLogger("worker.cli")

HostOpt = Annotated[str, typer.Option("--host", help="Interface to listen on.")]
PortOpt = Annotated[int, typer.Option("--port", help="TCP port.")]


def _setup_logging(settings: Settings) -> None:
    from worker.logs import setup_logging

    setup_logging(settings.log_level, settings.log_format)


def tcp_listener(host: str, port: int) -> socket.socket:
    """A listening TCP socket that says it is TCP (proto IPPROTO_TCP, not 0, which is what
    `socket.create_server` leaves). asyncio turns Nagle's algorithm off (TCP_NODELAY) only
    on connections whose socket says so; without it a response written in two parts waits
    for the client's delayed ACK, about 40 ms per request on a keep-alive connection."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:  # as create_server: IPv6 only, "::" is not 0.0.0.0
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    return sock


def _listen(host: str, port: int, command: str) -> socket.socket:
    """Bind before anything claims the port is ours; a taken port is one line, exit 2."""
    try:
        return tcp_listener(host, port)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            fail(
                f"port {port} is in use: stop the other process or use "
                f"thankly {command} --port {port + 1}",
                2,
            )
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}", 2)


def _serve(application: Any, sock: socket.socket, settings: Settings, **options: Any) -> None:
    """uvicorn on an already bound socket, logging through Thankly's handler; its access
    log (a line per request, pixels included) only when debugging."""
    import uvicorn

    config = uvicorn.Config(
        application,
        log_config=None,
        access_log=settings.log_level == "DEBUG",
        # uvicorn would believe X-Forwarded-For from 127.0.0.1 (or FORWARDED_ALLOW_IPS);
        # THANKLY_TRUSTED_PROXIES alone decides (worker/http/client_address.py).
        proxy_headers=False,
        **options,
    )
    # uvicorn says where it listens only for sockets it bound itself.
    host, port = sock.getsockname()[:2]
    log.info("serving HTTP on http://%s:%d", f"[{host}]" if ":" in host else host, port)
    uvicorn.Server(config).run(sockets=[sock])


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def _link_host(host: str) -> str:
    """Where a browser on this machine reaches a server listening on `host`."""
    if host in ("0.0.0.0", ""):  # noqa: S104 - compared, not bound
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def _activate_first() -> str | None:
    """`source .venv/bin/activate` when `thankly` is not on PATH yet (as after `make run`),
    so the banner spells the CLI as the README does: `thankly …`, never `.venv/bin/thankly`."""
    # Not resolved: a venv's python is a symlink to the system one.
    scripts = os.path.dirname(os.path.abspath(sys.executable))
    found = shutil.which("thankly")
    activate = os.path.join(scripts, "activate")
    if (found and os.path.dirname(os.path.abspath(found)) == scripts) or not os.path.exists(
        activate
    ):
        return None
    here = Path.cwd()
    inside = Path(activate).is_relative_to(here)
    return f"source {Path(activate).relative_to(here) if inside else activate}"


def _app(runtime: Runtime) -> Any:
    """The HTTP app, or one clear line when a webhook source is half configured."""
    from worker.http.app import create_app
    from worker.intake.sources import SourceNotReady

    try:
        return create_app(runtime)
    except SourceNotReady as exc:
        fail(str(exc), 2)


def _runtime(settings: Settings, *, pre_ping: bool = True) -> Runtime:
    """The process runtime, or one clear line when its configuration cannot work."""
    from worker.crm.adapters import CrmNotConfigured
    from worker.letters.brand import BrandError
    from worker.runtime import build_runtime

    problem = settings.mail_from_problem()
    if problem:
        fail(problem, 2)
    try:
        runtime = build_runtime(settings, pre_ping=pre_ping)
        runtime.brand.get()  # a brand file that does not validate stops the start
    except (CrmNotConfigured, BrandError) as exc:
        fail(str(exc), 2)
    return runtime


def _require_rules(runtime: Runtime) -> None:
    """Processes that plan letters refuse to start on a broken rules file."""
    from worker.planning.rules import RulesError

    try:
        rules = runtime.rules.get()
    except RulesError as exc:
        for line in exc.lines():
            err.print(line)
        fail(f"{len(exc.problems)} problem(s) in the rules file; fix them and start again", 2)
    log.info("%d rules loaded from %s", len(rules.rules), rules.source)


def _require_broker(settings: Settings, what: str) -> None:
    if settings.broker_url is None:
        fail(
            f"THANKLY_BROKER_URL is not set: `thankly {what}` needs Redis "
            "(the in-process broker exists only inside `thankly run`)",
            2,
        )


def run(host: HostOpt = "127.0.0.1", port: PortOpt = 8000) -> None:
    """API + worker + scheduler in one process, on embedded defaults (try-out mode)."""
    from pydantic import SecretStr

    from worker.migrate import upgrade
    from worker.runtime import set_runtime
    from worker.scheduling.embedded import celery_worker_thread, scheduler_thread
    from worker.secrets_store import (
        ADMIN_TOKEN_FILE,
        embedded_admin_token,
        secret_key,
        webhook_secrets_generated,
    )

    settings = _settings()
    _setup_logging(settings)
    sock = _listen(host, port, "run")
    url = f"http://{_link_host(host)}:{port}"
    run_url_file = settings.var_dir / RUN_URL_FILE
    if not os.environ.get("THANKLY_PUBLIC_URL", "").strip():
        # Links in letters and `thankly event send` follow --host/--port.
        settings = settings.model_copy(update={"public_url": url})
    secrets, generated = webhook_secrets_generated(settings, create=True)
    secret_key(settings, create=True)
    admin_token, token_generated = embedded_admin_token(settings)
    if settings.admin_token is None:
        settings = settings.model_copy(update={"admin_token": SecretStr(admin_token)})
    database = redact_url(settings.effective_database_url)
    log.info("%s", upgrade(settings.effective_database_url).describe(database))
    runtime = _runtime(settings)
    _require_rules(runtime)
    set_runtime(runtime)
    from worker.celery_app import app as celery

    send_hint = "thankly event send --type deal.closed --email anna@example.org"
    if url != settings.public_url:
        send_hint += f" --url {url}/webhooks/generic"
    activate = _activate_first()
    if activate:
        send_hint = f"{activate}\n  {send_hint}"
    # Shown once, when generated, so a CRM can be configured; afterwards only where it is
    # kept: a terminal log or a shared screen is no place to repeat a secret.
    secret_line = (
        f"{secrets[0]}  (generated, kept in {settings.var_dir / 'webhook_secret'})"
        if generated
        else "from THANKLY_WEBHOOK_SECRETS"
        if settings.webhook_secrets
        else f"kept in {settings.var_dir / 'webhook_secret'}"
    )
    # The same rule for the dashboard's token: shown once, when generated.
    token_line = (
        f"sign in with {admin_token} (generated, kept in {settings.var_dir / ADMIN_TOKEN_FILE})"
        if token_generated
        else "sign in with THANKLY_ADMIN_TOKEN"
        if os.environ.get("THANKLY_ADMIN_TOKEN")
        else f"sign in with the token in {settings.var_dir / ADMIN_TOKEN_FILE}"
    )
    broker = redact_url(settings.broker_url) if settings.broker_url else "in-process"
    letters = (
        redact_url(settings.smtp_url) if settings.smtp_url else f"{settings.outbox_dir}/ (.eml)"
    )
    with celery_worker_thread(celery), scheduler_thread(runtime):
        run_url_file.write_text(url + "\n")
        out.print(
            f"\n[bold]Thankly is running at {url}[/]\n"
            f"  database        {database}\n"
            f"  broker          {broker}\n"
            f"  letters         {letters}\n"
            f"  links           {settings.public_url}\n"
            f"  webhook secret  {secret_line}\n"
            f"  dashboard       {url}/ui/  {token_line}\n\n"
            f"Post a sample event from another terminal, in this folder:\n  {send_hint}\n",
            highlight=False,
            soft_wrap=True,
        )
        # uvicorn re-raises SIGTERM once it has shut down; as an exit rather than the
        # default kill, the threads stop cleanly and the stale address is removed.
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
        try:
            _serve(_app(runtime), sock, settings)
        finally:
            run_url_file.unlink(missing_ok=True)


WorkersOpt = Annotated[
    int | None,
    typer.Option(
        "--workers",
        min=1,
        max=64,
        help="API processes sharing the port [default: one per core, at most 8].",
        show_default=False,
    ),
]


def api(
    host: HostOpt = "0.0.0.0",  # noqa: S104 - a server
    port: PortOpt = 8000,
    workers: WorkersOpt = None,
) -> None:
    """The HTTP API alone (production; needs THANKLY_BROKER_URL)."""
    from worker.cli.prefork import default_workers, run_children
    from worker.runtime import set_runtime
    from worker.secrets_store import MissingSecretError

    settings = _settings()
    _require_broker(settings, "api")
    _setup_logging(settings)
    runtime = _runtime(settings)
    set_runtime(runtime)
    try:
        application = _app(runtime)
    except MissingSecretError as exc:
        fail(str(exc), 2)
    sock = _listen(host, port, "api")
    count = workers or default_workers()
    if count == 1:
        _serve(application, sock, settings)
        return
    # Checked above; each process builds its own from here (no connection crosses a fork).
    runtime.engine.dispose()

    def serve_child() -> None:
        child = _runtime(settings)
        set_runtime(child)
        _serve(_app(child), sock, settings)

    raise typer.Exit(run_children(count, serve_child))


# The Celery pools that fit Thankly's tasks (gevent/eventlet would need extra packages).
POOLS = ("prefork", "threads", "solo")


def worker(
    concurrency: Annotated[int, typer.Option(help="Parallel tasks.")] = 4,
    # Threads by default: sending waits on SMTP and the database, and one process holds
    # ~100 MB where four prefork children held ~440 MB (docs/BENCHMARKS.md); prefork sends
    # ~35% faster on 2 cores. Both pass the chaos run (tests/chaos).
    pool: Annotated[str, typer.Option(help="Celery pool: threads, prefork, solo.")] = "threads",
) -> None:
    """The Celery worker alone (production; needs THANKLY_BROKER_URL)."""
    from worker.celery_app import run_worker
    from worker.runtime import set_runtime

    choice(pool, POOLS, "--pool")
    settings = _settings()
    _require_broker(settings, "worker")
    _setup_logging(settings)
    # No test query before each use of a pooled connection: a task that meets a dead one
    # fails before it changed anything and is retried (DB_RETRIES), and the write after
    # a send retries itself (worker.delivery.send).
    runtime = _runtime(settings, pre_ping=False)
    _require_rules(runtime)
    from worker.secrets_store import MissingSecretError

    try:
        runtime.delivery()  # signing unsubscribe and tracking links needs the secret key
    except MissingSecretError as exc:
        fail(str(exc), 2)
    set_runtime(runtime)
    status = run_worker(
        [
            "worker",
            f"--concurrency={concurrency}",
            f"--pool={pool}",
            "--without-gossip",
            f"--loglevel={settings.log_level.upper()}",
        ]
    )
    if status:
        # A supervisor restarts a worker that fails; a 0 here would leave sending stopped.
        log.error(
            "the Celery worker stopped with exit status %s (the reason is logged above); "
            "exiting with it so that a supervisor restarts the worker",
            status,
        )
        raise typer.Exit(status)


def scheduler() -> None:
    """The scheduler loop alone: enqueues what is due, re-enqueues what was lost."""
    from worker.runtime import set_runtime
    from worker.scheduling.tick import run_forever

    settings = _settings()
    _require_broker(settings, "scheduler")
    _setup_logging(settings)
    runtime = _runtime(settings)
    set_runtime(runtime)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    log.info("scheduler started")
    run_forever(runtime, stop)
