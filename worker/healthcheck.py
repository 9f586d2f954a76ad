"""Container health checks: `python -m worker.healthcheck worker|scheduler`.

Exit 0 when healthy. The worker must answer a Celery ping; the scheduler must have
finished a loop recently (it touches a heartbeat file after every tick).
"""

from __future__ import annotations

import socket
import sys
import time

from worker.settings import Settings, load_settings

HEARTBEAT_FILE = "scheduler.heartbeat"


def scheduler_is_alive(settings: Settings, now: float | None = None) -> bool:
    path = settings.var_dir / HEARTBEAT_FILE
    try:
        age = (now or time.time()) - path.stat().st_mtime
    except FileNotFoundError:
        return False
    # Three missed loops before we call it dead: one slow tick is not an outage.
    return age < 3 * settings.sweep_interval_seconds + 10


def worker_is_alive(settings: Settings) -> bool:
    from worker.celery_app import configure

    app = configure(settings)
    replies = app.control.ping(destination=[f"celery@{socket.gethostname()}"], timeout=5)
    return bool(replies)


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[1] not in {"worker", "scheduler"}:
        print("usage: python -m worker.healthcheck worker|scheduler", file=sys.stderr)
        return 2
    settings = load_settings()
    alive = worker_is_alive(settings) if argv[1] == "worker" else scheduler_is_alive(settings)
    return 0 if alive else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
