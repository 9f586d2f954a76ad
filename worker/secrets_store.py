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
ADMIN_TOKEN_FILE = "admin_token"  # noqa: S105


class MissingSecretError(Exception):
    """No secret configured and this process may not generate one."""


def _new_webhook_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def _new_secret_key() -> str:
    return secrets.token_urlsafe(48)


def private_dir(path: Path) -> None:
    """THANKLY_VAR_DIR and what is under it hold secrets, letters and their recipients:
    only the account running Thankly may list or enter them (0700, also when an older
    version created the folder world-readable)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = path.stat()
    if info.st_mode & 0o077 and info.st_uid == os.getuid():
        path.chmod(0o700)


def private_file(path: Path) -> int:
    """Open PATH for writing, created as 0600 (never readable by others, not even for the
    moment between creating and a chmod); an existing file is made 0600 too."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    return fd


def _read_or_create(path: Path, make: Callable[[], str], create: bool) -> tuple[str | None, bool]:
    """The value in PATH, and whether this call generated it."""
    if create:  # the processes that may create secrets also close up an old, open folder
        private_dir(path.parent)
    if path.exists():
        return path.read_text().strip(), False
    if not create:
        return None, False
    value = make()
    # O_EXCL: if two processes race, one wins and the other reads the winner's value.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip(), False
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    return value, True


def webhook_secrets(settings: Settings, *, create: bool = False) -> list[str]:
    """The accepted secrets, newest first as configured (rotation: list old and new)."""
    return webhook_secrets_generated(settings, create=create)[0]


def webhook_secrets_generated(
    settings: Settings, *, create: bool = False
) -> tuple[list[str], bool]:
    """The accepted secrets, and whether this call generated one (then, and only then,
    `thankly run` shows it: a terminal log is no place to repeat a secret)."""
    if settings.webhook_secrets is not None:
        raw = settings.webhook_secrets.get_secret_value()
        return [s.strip() for s in raw.split(",") if s.strip()], False
    path = settings.var_dir / WEBHOOK_SECRET_FILE
    value, generated = _read_or_create(path, _new_webhook_secret, create)
    if value is None:
        raise MissingSecretError(
            "THANKLY_WEBHOOK_SECRETS is not set and no generated secret exists in "
            f"{path}; set it (whsec_…) or start `thankly run` once"
        )
    try:
        decode_webhook_secret(value)
    except ValueError as exc:
        raise MissingSecretError(f"{path}: {exc}") from None
    return [value], generated


def secret_key(settings: Settings, *, create: bool = False) -> str:
    if settings.secret_key is not None:
        return settings.secret_key.get_secret_value()
    path = settings.var_dir / SECRET_KEY_FILE
    value, _ = _read_or_create(path, _new_secret_key, create)
    if value is None:
        raise MissingSecretError(
            f"THANKLY_SECRET_KEY is not set and no generated key exists in {path}"
        )
    return value


def embedded_admin_token(settings: Settings) -> tuple[str, bool]:
    """THANKLY_ADMIN_TOKEN, else one `thankly run` generates and keeps under
    THANKLY_VAR_DIR, so that the dashboard of a try-out works with no configuration (the
    production processes never generate one: without the variable, /admin and /ui stay
    off). Returns the token and whether this call generated it."""
    if settings.admin_token is not None:
        return settings.admin_token.get_secret_value(), False
    value, generated = _read_or_create(
        settings.var_dir / ADMIN_TOKEN_FILE, lambda: secrets.token_urlsafe(32), True
    )
    assert value is not None  # created when missing
    return value, generated
