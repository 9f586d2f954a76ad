"""The baseline for benchmarks.worker_memory: a plain Celery app with one task, nothing of
Thankly imported. `python -m celery -A benchmarks.plain_celery worker …`"""

from __future__ import annotations

import os

from celery import Celery

app = Celery("plain", broker=os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/12"))


@app.task  # type: ignore[untyped-decorator]
def noop(item: int) -> int:
    return item
