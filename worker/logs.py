"""One log format for every line a Thankly process writes: its own, uvicorn's and Celery's.

Every logger propagates to a single root handler on stderr, so a line from uvicorn looks
like a line from Thankly: `time level logger: message` (text) or one JSON object (json).
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import IO, Literal

LogFormat = Literal["text", "json"]

# Celery logs every task twice at INFO ("Task … received", "Task … succeeded in …"): at a
# few letters a minute that drowns the lines that say what happened to a letter.
# Alembic's per-connection notes repeat on every start; `db upgrade` sums up in one line.
CHATTY_LOGGERS = ("celery.worker.strategy", "celery.app.trace", "alembic.runtime.migration")
# Libraries that install their own handlers or stop propagation; cleared so their lines
# reach the one root handler instead of being printed twice or in another format.
OWN_HANDLER_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "celery", "celery.task")


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = f"{_timestamp(record)} {record.levelname} {record.name}: {record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line, so a log shipper needs no parsing rules."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, str] = {
            "time": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class _Threshold(logging.Filter):
    """Demotes Celery's per-task chatter to DEBUG, then applies the configured level."""

    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name in CHATTY_LOGGERS and record.levelno == logging.INFO:
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return record.levelno >= self.level


# A webhook URL may carry its credential (amoCRM's `?secret=`): never written to a log.
_URL_SECRET = re.compile(r"(?i)([?&](?:secret|token|api_token)=)[^&\s\"]*")


def hide_url_secrets(text: str) -> str:
    return _URL_SECRET.sub(r"\1***", text)


class _NoUrlSecrets(logging.Filter):
    """uvicorn's access log (on at DEBUG) prints each request's path and query."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and record.args:
            record.args = tuple(
                hide_url_secrets(a) if isinstance(a, str) else a for a in record.args
            )
        return True


def setup_logging(level: str, fmt: LogFormat = "text", stream: IO[str] | None = None) -> None:
    """Replace whatever logging configuration exists with the one Thankly handler."""
    threshold = logging.getLevelName(level.upper())
    if not isinstance(threshold, int):
        raise ValueError(f"{level!r} is not a log level")
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(_Threshold(threshold))
    handler.addFilter(_NoUrlSecrets())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(threshold)
    # Library warnings (Celery's, say) become log lines in this format, not raw stderr.
    logging.captureWarnings(True)
    for name in OWN_HANDLER_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
        logger.setLevel(logging.NOTSET)


def mask_email(email: str | None) -> str:
    """`anna@example.org` → `…@example.org`: the recipient's domain, the way every log line
    names a recipient (the "sent" line too), never the address itself."""
    if not email or "@" not in email:
        return "(no address)"
    return f"…@{email.rpartition('@')[2]}"
