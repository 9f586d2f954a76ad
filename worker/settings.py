"""Settings from THANKLY_* environment variables, validated once at start-up.

Secrets are SecretStr (masked in repr and logs); URLs that may carry passwords are kept
out of repr and shown only through `redact_url`.
"""

from __future__ import annotations

import base64
import binascii
import difflib
from collections.abc import Mapping
from email.utils import getaddresses, parseaddr
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

CrmKind = Literal["log", "http", "hubspot", "pipedrive", "bitrix24", "amocrm"]
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# Short secrets can be guessed offline from a signed link (the key) or online (the token).
MIN_LENGTHS = {
    "secret_key": 32,
    "admin_token": 24,
    "readonly_token": 24,
    "metrics_token": 24,
    "amocrm_webhook_secret": 24,
}
HOW_TO_MAKE_ONE = 'python -c "import secrets; print(secrets.token_urlsafe(32))"'
# Variables with the prefix that belong to the test suite and benchmarks, not to Thankly.
FOREIGN_PREFIXES = ("THANKLY_TEST_", "THANKLY_BENCH_")


# `thankly run` writes the address it serves here (in the var dir) while it runs.
RUN_URL_FILE = "run_url"


class SettingsError(Exception):
    """A setting has a wrong value; the message names the variable."""


def decode_webhook_secret(secret: str) -> bytes:
    """Key bytes of a Standard Webhooks secret (`whsec_` + base64); ValueError if malformed."""
    body = secret.removeprefix("whsec_")
    try:
        key = base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("must be whsec_ followed by base64") from exc
    if len(key) < 16:
        raise ValueError("must decode to at least 16 bytes of key")
    return key


def redact_url(url: str) -> str:
    """The URL with any password replaced by ***, safe to print."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


class Settings(BaseSettings):
    # An empty variable means unset (compose writes `${VAR:-}`): never an empty secret.
    model_config = SettingsConfigDict(
        env_prefix="THANKLY_", extra="ignore", frozen=True, env_ignore_empty=True
    )

    var_dir: Path = Path("var")
    database_url: str | None = Field(default=None, repr=False)
    broker_url: str | None = Field(default=None, repr=False)
    smtp_url: str | None = Field(default=None, repr=False)
    mail_from: str = "Thankly <thankly@localhost>"
    public_url: str = "http://127.0.0.1:8000"
    webhook_secrets: SecretStr | None = None
    secret_key: SecretStr | None = None
    admin_token: SecretStr | None = None
    # Signs in to the dashboard to look, never to act (THANKLY_ADMIN_TOKEN does both).
    readonly_token: SecretStr | None = None
    # When set, GET /metrics wants it as a bearer token.
    metrics_token: SecretStr | None = None
    rules_file: Path = Path("config/rules.yaml")
    templates_dir: Path = Path("templates")
    # Who "we" are in letters (worker/letters/brand.py); THANKLY_BRAND_* override it.
    brand_file: Path = Path("config/brand.yaml")
    crm: CrmKind = "log"
    crm_url: str | None = None
    crm_secret: SecretStr | None = None
    hubspot_token: SecretStr | None = None
    hubspot_client_secret: SecretStr | None = None
    hubspot_api_base: str = "https://api.hubapi.com"
    # Deal stage ids that mean won / lost (comma-separated; every pipeline has its own).
    hubspot_won_stages: str = "closedwon"
    hubspot_lost_stages: str = "closedlost"
    # For contacts whose HubSpot record has no language / time zone.
    hubspot_locale: str | None = None
    hubspot_timezone: str | None = None
    # HubSpot allows a private app 190 requests per 10 s: shared by every Thankly process.
    hubspot_requests_per_10s: int = Field(default=150, ge=1, le=190)
    # Contact properties whose change is feedback (a 0-100 rating) or a referral (the
    # referred person's name); each needs a contact.propertyChange subscription.
    hubspot_feedback_property: str | None = None
    hubspot_feedback_text_property: str | None = None
    hubspot_referral_property: str | None = None
    pipedrive_token: SecretStr | None = None
    pipedrive_webhook_user: str | None = None
    pipedrive_webhook_password: SecretStr | None = None
    # Your company domain (https://acme.pipedrive.com) or the generic API host.
    pipedrive_api_base: str = "https://api.pipedrive.com"
    # For persons Pipedrive keeps no language / time zone for.
    pipedrive_locale: str | None = None
    pipedrive_timezone: str | None = None
    # Pipedrive's burst limit is per 2-second window and per token, shared by every process.
    pipedrive_requests_per_2s: int = Field(default=20, ge=1, le=200)
    # Deal fields (their API keys) whose change is feedback (a 0-100 rating) or a referral
    # (the referred person's name).
    pipedrive_feedback_field: str | None = None
    pipedrive_referral_field: str | None = None
    # Or: an activity type (its key) marked done, or a note beginning with a tag.
    pipedrive_feedback_activity_type: str | None = None
    pipedrive_referral_activity_type: str | None = None
    pipedrive_feedback_note_tag: str | None = None
    pipedrive_referral_note_tag: str | None = None
    # Bitrix24: the portal's domain and the outbound webhook's application token (intake),
    # the incoming webhook's URL https://<portal>/rest/<user>/<secret>/ (the REST API).
    bitrix24_portal: str | None = None
    bitrix24_app_token: SecretStr | None = None
    bitrix24_rest_url: SecretStr | None = None
    # A portal's customers' language and zone unless the contact says otherwise.
    bitrix24_locale: str = "ru"
    bitrix24_timezone: str = "Europe/Moscow"
    # The portal's leaky bucket drains 2 requests a second (Enterprise: 5).
    bitrix24_requests_per_second: int = Field(default=2, ge=1, le=5)
    # amoCRM / Kommo: the account (subdomain, id) and the secret in the webhook's URL
    # (intake), a long-lived token (API v4).
    amocrm_subdomain: str | None = None
    amocrm_account_id: str | None = None
    amocrm_webhook_secret: SecretStr | None = None
    amocrm_token: SecretStr | None = None
    # https://<subdomain>.amocrm.ru unless set (Kommo: https://<subdomain>.kommo.com).
    amocrm_api_base: str | None = None
    amocrm_locale: str = "ru"
    amocrm_timezone: str = "Europe/Moscow"
    # amoCRM keeps one currency per account, not per lead.
    amocrm_currency: str = "RUB"
    amocrm_requests_per_second: int = Field(default=6, ge=1, le=7)
    # Native CRMs: how often the scheduler reconciles (0: only by hand).
    crm_reconcile_minutes: int = Field(default=30, ge=0)
    machine_open_seconds: int = Field(default=5, ge=0)
    next_step_url: str | None = None
    crm_opens: Literal["first", "all"] = "first"  # which human opens reach the CRM
    crm_tries: int = Field(default=3, ge=1, le=10)
    crm_retry_wait_seconds: float = Field(default=1.0, ge=0)

    # Delivery: tries inside one task run, then the letter waits and is tried again later,
    # up to max_send_attempts SMTP attempts in all before it is `failed`.
    smtp_tries: int = Field(default=3, ge=1, le=10)
    smtp_retry_wait_seconds: float = Field(default=2.0, ge=0)
    max_send_attempts: int = Field(default=12, ge=1)
    retry_delay_seconds: float = Field(default=600.0, ge=0)
    sending_timeout_seconds: float = Field(default=900.0, gt=0)
    # Due letters per send task: one read and one task's overhead for several letters.
    # Each is still claimed just before its own send, so a worker that dies mid-batch
    # leaves the rest `queued` (sent later), never `sending` (unknown).
    send_batch: int = Field(default=10, ge=1, le=200)
    replay_rate_per_second: float = Field(default=2.0, gt=0)  # pacing of bulk replays

    # Operational knobs (not in the product contract, safe defaults).
    webhook_max_bytes: int = Field(default=256 * 1024, gt=0)
    webhook_tolerance_seconds: int = Field(default=300, gt=0)
    sweep_interval_seconds: float = Field(default=10.0, gt=0)
    sweep_grace_seconds: float = Field(default=60.0, gt=0)
    # A CRM activity handed to a task is claimed again when this runs out (its worker died,
    # or the broker lost the task): longer than the grace the sweepers give a queued task.
    crm_lease_seconds: float = Field(default=300.0, gt=0)
    # Proxies whose X-Forwarded-For is believed (addresses or networks, comma-separated);
    # none by default, so a client cannot name its own address in the audit log.
    trusted_proxies: str = ""
    log_level: str = "INFO"
    # `json`: one object per line (time, level, logger, message, exception) for shippers.
    log_format: Literal["text", "json"] = "text"

    @model_validator(mode="before")
    @classmethod
    def _public_url_follows_thankly_run(cls, data: Any) -> Any:
        """With THANKLY_PUBLIC_URL unset, the address of the `thankly run` serving this var
        dir, so `thankly event send` and links reach it on whatever --port it was given."""
        if not isinstance(data, dict) or data.get("public_url"):
            return data
        try:
            url = (Path(data.get("var_dir") or "var") / RUN_URL_FILE).read_text().strip()
        except (OSError, UnicodeDecodeError):
            return data
        return {**data, "public_url": url} if url else data

    @field_validator("database_url", "broker_url", "smtp_url", "crm_url")
    @classmethod
    def _url_has_scheme(cls, value: str | None) -> str | None:
        if value is not None and "://" not in value:
            raise ValueError("must be a URL such as scheme://host")
        return value

    @field_validator("database_url")
    @classmethod
    def _postgres_uses_psycopg3(cls, value: str | None) -> str | None:
        """Hosting providers hand out `postgres://` URLs; SQLAlchemy would look for the
        psycopg2 driver, which is not installed, so both spellings mean psycopg 3."""
        if value is None:
            return None
        scheme, sep, rest = value.partition("://")
        if scheme in ("postgres", "postgresql"):
            return f"postgresql+psycopg{sep}{rest}"
        if scheme.startswith("postgresql+") and scheme != "postgresql+psycopg":
            raise ValueError(
                f"{scheme}:// needs a driver Thankly does not ship; write postgresql://"
            )
        return value

    @field_validator("crm_lease_seconds")
    @classmethod
    def _lease_outlasts_the_grace(cls, value: float, info: ValidationInfo) -> float:
        grace = info.data.get("sweep_grace_seconds")
        if grace is not None and value <= grace:
            raise ValueError(
                f"must be longer than THANKLY_SWEEP_GRACE_SECONDS ({grace:g} s), or a CRM "
                "delivery still waiting in the queue is claimed a second time"
            )
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies_are_networks(cls, value: str) -> str:
        for item in value.split(","):
            if item.strip():
                try:
                    ip_network(item.strip(), strict=False)
                except ValueError:
                    raise ValueError(
                        f"{item.strip()!r} is not an address or network such as 10.0.0.0/8"
                    ) from None
        return value

    @property
    def embedded(self) -> bool:
        """The try-out mode: in-process broker and letters written to var/outbox/."""
        return self.broker_url is None and self.smtp_url is None

    def mail_from_problem(self) -> str | None:
        """Letters that really leave must come from a real address: the placeholder
        default is only for the embedded mode, where they go to var/outbox/."""
        address = parseaddr(self.mail_from)[1]
        if "@" not in address:
            return (
                f"THANKLY_MAIL_FROM {self.mail_from!r} has no address, e.g. Team <team@example.com>"
            )
        if self.embedded or not address.lower().endswith("@localhost"):
            return None
        return (
            f"THANKLY_MAIL_FROM is {address}: set it to the address letters come from, "
            "e.g. THANKLY_MAIL_FROM='Nordlicht <thanks@nordlicht.example>' "
            "(the localhost default is only for the embedded mode)"
        )

    @property
    def trusted_proxy_networks(self) -> list[IPv4Network | IPv6Network]:
        return [
            ip_network(x.strip(), strict=False)
            for x in self.trusted_proxies.split(",")
            if x.strip()
        ]

    @field_validator("log_level")
    @classmethod
    def _known_log_level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in LOG_LEVELS:
            raise ValueError(f"{value!r} is not a log level; use one of {', '.join(LOG_LEVELS)}")
        return level

    @field_validator("log_format", mode="before")
    @classmethod
    def _log_format_any_case(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("mail_from")
    @classmethod
    def _mail_from_is_an_address(cls, value: str) -> str:
        parsed = getaddresses([value])
        address = parsed[0][1] if len(parsed) == 1 else ""
        local, at, domain = address.rpartition("@")
        if not (at and local and domain) or any(c.isspace() for c in address):
            raise ValueError(
                f"{value!r} is not an address; write e.g. "
                "'Shop <thanks@shop.example>' or thanks@shop.example"
            )
        return value

    @field_validator("broker_url")
    @classmethod
    def _broker_is_redis(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://")):
            raise ValueError("must be a redis:// or rediss:// URL")
        return value

    @field_validator("smtp_url")
    @classmethod
    def _smtp_url(cls, value: str | None) -> str | None:
        if value is not None:
            from worker.delivery.smtp import SmtpConfig

            SmtpConfig.from_url(value)
        return value

    @field_validator("next_step_url")
    @classmethod
    def _next_step_http(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value

    @field_validator("public_url")
    @classmethod
    def _public_url_http(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("webhook_secrets")
    @classmethod
    def _secrets_decode(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            items = [s.strip() for s in value.get_secret_value().split(",") if s.strip()]
            if not items:
                raise ValueError("must list at least one whsec_ secret")
            for item in items:
                decode_webhook_secret(item)
        return value

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.var_dir / 'thankly.db').as_posix()}"

    @property
    def effective_broker_url(self) -> str:
        """`memory://` means the in-process broker, usable only by `thankly run`."""
        return self.broker_url or "memory://localhost/"

    @property
    def outbox_dir(self) -> Path:
        return self.var_dir / "outbox"


def load_settings() -> Settings:
    """Read the environment; raise SettingsError with one line naming the variable."""
    try:
        settings = Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "?"
        message = first["msg"].removeprefix("Value error, ")
        raise SettingsError(f"THANKLY_{field.upper()}: {message}") from None
    _check_secret_lengths(settings)
    return settings


def _check_secret_lengths(settings: Settings) -> None:
    """Checked on what the environment gives, not in the model, so that tests may build
    Settings with short throwaway keys."""
    for name, minimum in MIN_LENGTHS.items():
        secret: SecretStr | None = getattr(settings, name)
        if secret is not None and len(secret.get_secret_value()) < minimum:
            raise SettingsError(
                f"THANKLY_{name.upper()}: must be at least {minimum} characters "
                f"(is {len(secret.get_secret_value())}); make one with {HOW_TO_MAKE_ONE}"
            )
    admin, viewer = settings.admin_token, settings.readonly_token
    # One token for both would make every read-only login an admin one.
    if admin is not None and viewer is not None and admin == viewer:
        raise SettingsError("THANKLY_READONLY_TOKEN: must differ from THANKLY_ADMIN_TOKEN")


def setting_names() -> list[str]:
    """Every variable Thankly reads, derived from the fields so it never goes stale
    (the brand's THANKLY_BRAND_* from worker/letters/brand.py)."""
    from worker.letters.brand import brand_variables

    return sorted([f"THANKLY_{name.upper()}" for name in Settings.model_fields] + brand_variables())


def misspelt_variables(environ: Mapping[str, str]) -> list[str]:
    """One warning per THANKLY_* variable that is no setting, with the closest one."""
    valid = setting_names()
    warnings = []
    for name in sorted(environ):
        if not name.startswith("THANKLY_") or name.startswith(FOREIGN_PREFIXES):
            continue
        if name in valid:
            continue
        # Compared without the shared prefix, which would make any two names look alike.
        bare = [v.removeprefix("THANKLY_") for v in valid]
        close = difflib.get_close_matches(name.removeprefix("THANKLY_"), bare, n=1, cutoff=0.7)
        hint = f"; did you mean THANKLY_{close[0]}?" if close else ""
        warnings.append(f"{name} is not a Thankly setting{hint}")
    return warnings
