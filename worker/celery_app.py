"""The Celery application. Configured from Settings at start-up; tasks live in `tasks/`."""

from __future__ import annotations

from typing import Any

from celery import Celery, signals
from sqlalchemy.exc import OperationalError

from worker.settings import Settings, load_settings

app = Celery("thankly", set_as_current=False)


def _keep_thankly_logging(**_: Any) -> None:
    """Any receiver here stops Celery from installing its own handlers and format. The
    `thankly` commands have configured logging already; a bare `celery -A` start has not."""
    import logging

    from worker.logs import setup_logging

    if not logging.getLogger().handlers:
        settings = load_settings()
        setup_logging(settings.log_level, settings.log_format)


signals.setup_logging.connect(_keep_thankly_logging)


# For tasks whose only transient failure is the database: retried soon, briefly (the
# sweepers are the last line of defence). Never a long countdown: see principle 1.
DB_RETRIES = {
    "autoretry_for": (OperationalError,),
    "retry_backoff": 2,
    "retry_backoff_max": 120,
    "max_retries": 6,
}


def configure(settings: Settings) -> Celery:
    # Drop any producer pool built for a previous configuration (tests reconfigure).
    app.close()
    app.conf.update(
        broker_url=settings.effective_broker_url,
        include=["tasks.intake", "tasks.sending", "tasks.crm"],
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        # A task is acknowledged after it ran; a worker killed mid-task gives it back.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        # When Redis drops, let a running task finish instead of cancelling it mid-SMTP
        # (which would strand its letter in `sending`): its redelivered message then finds
        # the letter already claimed and does nothing.
        worker_cancel_long_running_tasks_on_connection_loss=False,
        worker_prefetch_multiplier=1,
        task_default_queue="thankly",
        broker_connection_retry_on_startup=True,
        # Fail fast when Redis is down: the webhook is already stored, the sweeper retries.
        broker_connection_timeout=3,
        broker_transport_options={
            "socket_timeout": 5,
            "socket_connect_timeout": 3,
            "max_retries": 1,
            "visibility_timeout": 3600,
        },
        task_publish_retry=False,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
    )
    return app


def run_worker(argv: list[str]) -> int:
    """Run `celery worker ARGV` and return the worker's exit status.

    Celery's own `worker_main` drops the status its command computes, so a worker that
    stopped on an unrecoverable broker error would look like a clean stop to a supervisor
    that restarts only on failure. This runs the same command and keeps the status.
    """
    import click
    from celery.bin.celery import celery as celery_command
    from celery.worker import state

    # What Celery's `app.start` does to run its command on this app instead of `-A`.
    celery_command.params[0].default = app
    try:
        status = celery_command.main(args=argv, standalone_mode=False)
    except click.exceptions.Exit as exc:
        status = exc.exit_code
    finally:
        celery_command.params[0].default = None
    if isinstance(status, int):
        return status
    # A cold shutdown (WorkerTerminate) leaves no status on the worker; the flag that
    # requested it may hold one. A stop with no status at all was no orderly stop.
    return state.should_terminate if isinstance(state.should_terminate, int) else 1
