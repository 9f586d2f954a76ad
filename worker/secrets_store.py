"""Secrets that the embedded mode generates once and keeps under THANKLY_VAR_DIR.

An environment variable always wins; the files exist so that `make run` works with no
configuration and a restart keeps the same webhook secret (CRMs would break otherwise).
"""

from __future__ import annotations

import base64
import os
import secrets
from collections.abc import Callable
from pathlib import Path

from worker.settings import Settings, decode_webhook_secret

# File names under THANKLY_VAR_DIR, not secrets.
WEBHOOK_SECRET_FILE = "webhook_secret"  # noqa: S105
SECRET_KEY_FILE = "secret_key"  # noqa: S105


class MissingSecretError(Exception):
    """No secret configured and this process may not generate one."""


def _new_webhook_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def _new_secret_key() -> str:
    return secrets.token_urlsafe(48)


def _read_or_create(path: Path, make: Callable[[], str], create: bool) -> str | None:
    if path.exists():
        return path.read_text().strip()
    if not create:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    value = make()
    # O_EXCL: if two processes race, one wins and the other reads the winner's value.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    return value


def webhook_secrets(settings: Settings, *, create: bool = False) -> list[str]:
    """The accepted secrets, newest first as configured (rotation: list old and new)."""
    if settings.webhook_secrets is not None:
        raw = settings.webhook_secrets.get_secret_value()
        return [s.strip() for s in raw.split(",") if s.strip()]
    path = settings.var_dir / WEBHOOK_SECRET_FILE
    value = _read_or_create(path, _new_webhook_secret, create)
    if value is None:
        raise MissingSecretError(
            "THANKLY_WEBHOOK_SECRETS is not set and no generated secret exists in "
            f"{path}; set it (whsec_…) or start `thankly run` once"
        )
    try:
        decode_webhook_secret(value)
    except ValueError as exc:
        raise MissingSecretError(f"{path}: {exc}") from None
    return [value]


def secret_key(settings: Settings, *, create: bool = False) -> str:
    if settings.secret_key is not None:
        return settings.secret_key.get_secret_value()
    path = settings.var_dir / SECRET_KEY_FILE
    value = _read_or_create(path, _new_secret_key, create)
    if value is None:
        raise MissingSecretError(
            f"THANKLY_SECRET_KEY is not set and no generated key exists in {path}"
        )
    return value
