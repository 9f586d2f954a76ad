"""CRM adapters behind one interface, chosen by THANKLY_CRM.

`deliver` raises CrmError (a CallError) saying whether trying again can help; `retry_after`
carries a 429's Retry-After. `retry` is true when an earlier try of the same activity may
have reached the CRM: an adapter for a CRM without idempotency keys looks before it writes.

Write-back goes to the CRM the event came from: an activity whose event arrived through
a natively connected CRM (`/webhooks/hubspot`, `/webhooks/pipedrive`) goes to that CRM's
adapter (`worker/crm/<name>/writeback.py`); any other goes to THANKLY_CRM's.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

import httpx

from worker.intake.signatures import signed_headers
from worker.retry import CallError
from worker.settings import Settings

log = logging.getLogger(__name__)


class CrmError(CallError):
    """A CRM call failed; `permanent` and `retry_after` feed the one retry policy."""


class CrmAdapter(Protocol):
    name: str

    def deliver(self, key: str, payload: dict[str, Any], *, retry: bool = False) -> None: ...


class LogCrm:
    """Keeps activities in Thankly only (visible in `thankly letters show`)."""

    name = "log"

    def deliver(self, key: str, payload: dict[str, Any], *, retry: bool = False) -> None:
        log.info("CRM activity %s (%s) recorded locally", payload["type"], key)


# A CRM asking for more is asked again after this; its answer cannot park an activity.
MAX_RETRY_AFTER = 3600.0
_DELAY_SECONDS = re.compile(r"[0-9]{1,12}")


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    """Retry-After as delay-seconds or an HTTP date (RFC 9110 10.2.3), clamped to
    [0, MAX_RETRY_AFTER]; None for anything else, which the caller treats as absent."""
    value = (value or "").strip()
    if not value:
        return None
    if value.isascii() and _DELAY_SECONDS.fullmatch(value):
        return min(float(value), MAX_RETRY_AFTER)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # `-0000`: RFC 5322's "UTC, zone unknown"
        when = when.replace(tzinfo=UTC)
    return min(max(0.0, (when - now).total_seconds()), MAX_RETRY_AFTER)


def header_key(key: str) -> str:
    """The activity key as sent in `webhook-id` and `Idempotency-Key`. Header values are
    ASCII, and a key may hold an address (`unsubscribed:müller@exämple.org`): such a key
    is sent as a digest, the same on every retry, while the address itself travels in the
    JSON body. An ASCII key is sent as it is, so keys already known to a CRM stay valid."""
    if key.isascii() and key.isprintable():
        return key
    return "u8-" + hashlib.sha256(key.encode()).hexdigest()[:40]


class HttpCrm:
    """POSTs a Standard Webhooks envelope to THANKLY_CRM_URL, signed with
    THANKLY_CRM_SECRET, with an Idempotency-Key."""

    name = "http"

    def __init__(self, url: str, secret: str, client: httpx.Client | None = None) -> None:
        self.url = url
        self.secret = secret
        self.client = client or httpx.Client(timeout=10)

    def deliver(self, key: str, payload: dict[str, Any], *, retry: bool = False) -> None:
        from worker.clock import SystemClock

        now = SystemClock().now()
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        key = header_key(key)
        headers = signed_headers(self.secret, key, int(now.timestamp()), body)
        headers |= {"content-type": "application/json", "idempotency-key": key}
        try:
            response = self.client.post(self.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise CrmError(f"{type(exc).__name__}: {exc}", permanent=False) from None
        status = response.status_code
        if status < 300:
            return
        text = f"HTTP {status}: {response.text[:300]}"
        if status == 429 or status == 408 or status >= 500:
            wait = retry_after_seconds(response.headers.get("retry-after"), now)
            raise CrmError(text, permanent=False, retry_after=wait)
        raise CrmError(text, permanent=True)  # other 4xx: the request itself is wrong


class CrmRouter:
    """Sends each activity to the CRM its event came from, else to the default."""

    name = "router"

    def __init__(self, default: CrmAdapter, native: dict[str, CrmAdapter]) -> None:
        self.default, self.native = default, native

    def adapter_for(self, payload: dict[str, Any]) -> CrmAdapter:
        source = (payload.get("data") or {}).get("source")
        return self.native.get(str(source), self.default)

    def deliver(self, key: str, payload: dict[str, Any], *, retry: bool = False) -> None:
        self.adapter_for(payload).deliver(key, payload, retry=retry)


class CrmNotConfigured(Exception):
    pass


def _native(settings: Settings) -> dict[str, CrmAdapter]:
    """Write-back adapters of the CRMs whose API token is set."""
    adapters: dict[str, CrmAdapter] = {}
    if settings.hubspot_token is not None:
        from worker.crm.hubspot.api import from_settings
        from worker.crm.hubspot.writeback import HubSpotCrm

        adapters["hubspot"] = HubSpotCrm(from_settings(settings))
    if settings.pipedrive_token is not None:
        from worker.crm.pipedrive.api import from_settings as pipedrive_api
        from worker.crm.pipedrive.writeback import PipedriveCrm

        adapters["pipedrive"] = PipedriveCrm(pipedrive_api(settings))
    if settings.bitrix24_rest_url is not None:
        from worker.crm.bitrix24.api import from_settings as bitrix24_api
        from worker.crm.bitrix24.writeback import Bitrix24Crm

        language = "ru" if settings.bitrix24_locale.lower().startswith("ru") else "en"
        adapters["bitrix24"] = Bitrix24Crm(bitrix24_api(settings), language)
    if settings.amocrm_token is not None and (
        settings.amocrm_subdomain or settings.amocrm_api_base
    ):
        from worker.crm.amocrm.api import from_settings as amocrm_api
        from worker.crm.amocrm.writeback import AmoCrmCrm

        language = "ru" if settings.amocrm_locale.lower().startswith("ru") else "en"
        adapters["amocrm"] = AmoCrmCrm(amocrm_api(settings), language)
    return adapters


def make_crm(settings: Settings) -> CrmAdapter:
    native = _native(settings)
    default: CrmAdapter
    if settings.crm == "log":
        default = LogCrm()
    elif settings.crm == "http":
        if not settings.crm_url or settings.crm_secret is None:
            raise CrmNotConfigured("THANKLY_CRM=http needs THANKLY_CRM_URL and THANKLY_CRM_SECRET")
        default = HttpCrm(settings.crm_url, settings.crm_secret.get_secret_value())
    elif settings.crm in native:
        # Events from other sources carry this CRM's ids (a relay that knows them).
        default = native[settings.crm]
    else:
        token = {"bitrix24": "THANKLY_BITRIX24_REST_URL"}.get(
            settings.crm, f"THANKLY_{settings.crm.upper()}_TOKEN"
        )
        raise CrmNotConfigured(f"THANKLY_CRM={settings.crm} needs {token}")
    return CrmRouter(default, native) if native else default
