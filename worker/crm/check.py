"""`thankly crm check <crm>`: is the connection set up, and does the CRM agree?

Every check has the same three parts: the URL to paste into the CRM, whether the intake's
credentials are set (else the URL answers 404), and what the CRM's API says to the
token (one or two reads, never a write, so it is safe to run at any time). Each finding is
one line saying what to do when something is missing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from worker.retry import CallError
from worker.settings import Settings


@dataclass(frozen=True)
class Finding:
    ok: bool
    text: str


@dataclass(frozen=True)
class Connection:
    url_line: str
    intake_set: bool
    intake_ok: str
    intake_missing: str  # the settings to set
    api_missing: str | None  # the API setting, when it is not set
    ask_api: Callable[[], list[Finding]]  # the API's answer; raises CallError


def _findings(c: Connection) -> list[Finding]:
    found = [Finding(True, c.url_line)]
    if c.intake_set:
        found.append(Finding(True, c.intake_ok))
    else:
        found.append(Finding(False, f"{c.intake_missing} not set: the URL answers 404"))
    if c.api_missing is not None:
        found.append(Finding(False, f"{c.api_missing} is not set: the CRM cannot be read"))
        return found
    try:
        found += c.ask_api()
    except CallError as exc:
        found.append(Finding(False, f"the CRM's API refused: {exc}"))
    return found


def _url(settings: Settings, path: str) -> str:
    return f"{settings.public_url.rstrip('/')}{path}"


def _stages(value: str) -> list[str]:
    return [s.strip() for s in value.split(",") if s.strip()]


def check_hubspot(settings: Settings) -> list[Finding]:
    from worker.crm.hubspot.api import from_settings

    def ask() -> list[Finding]:
        stages = from_settings(settings).deal_stages()
        found = [Finding(True, f"API token accepted; {len(stages)} deal stages in the account")]
        for name, configured in (
            ("THANKLY_HUBSPOT_WON_STAGES", _stages(settings.hubspot_won_stages)),
            ("THANKLY_HUBSPOT_LOST_STAGES", _stages(settings.hubspot_lost_stages)),
        ):
            for stage in configured:
                if stage in stages:
                    found.append(Finding(True, f"{name}: {stage} is \u201c{stages[stage]}\u201d"))
                else:
                    known = ", ".join(f"{k} ({v})" for k, v in sorted(stages.items()))
                    found.append(
                        Finding(False, f"{name}: no stage {stage!r}; the account has {known}")
                    )
        return found

    return _findings(
        Connection(
            f"webhook URL for the app's Webhooks settings: {_url(settings, '/webhooks/hubspot')}",
            settings.hubspot_client_secret is not None,
            "client secret set (webhook signatures are verified)",
            "THANKLY_HUBSPOT_CLIENT_SECRET is",
            None if settings.hubspot_token else "THANKLY_HUBSPOT_TOKEN",
            ask,
        )
    )


def check_pipedrive(settings: Settings) -> list[Finding]:
    from worker.crm.pipedrive.api import from_settings

    def ask() -> list[Finding]:
        me = from_settings(settings).me()
        company = me.get("company_name") or me.get("company_domain") or "the company"
        return [Finding(True, f"API token accepted: {me.get('name')} at {company}")]

    return _findings(
        Connection(
            "webhook URL (version 2.0, event change.deal): "
            + _url(settings, "/webhooks/pipedrive"),
            bool(settings.pipedrive_webhook_user and settings.pipedrive_webhook_password),
            "webhook basic-auth user and password set",
            "THANKLY_PIPEDRIVE_WEBHOOK_USER / _PASSWORD are",
            None if settings.pipedrive_token else "THANKLY_PIPEDRIVE_TOKEN",
            ask,
        )
    )


def check_bitrix24(settings: Settings) -> list[Finding]:
    from worker.crm.bitrix24.api import METHODS, from_settings

    def ask() -> list[Finding]:
        me = from_settings(settings).result(METHODS["profile"]) or {}
        who = " ".join(str(me.get(k) or "") for k in ("NAME", "LAST_NAME")).strip()
        return [Finding(True, f"incoming webhook accepted: it acts as {who or 'a user'}")]

    return _findings(
        Connection(
            "outbound webhook URL (events ONCRMDEALUPDATE, ONCRMDEALADD): "
            + _url(settings, "/webhooks/bitrix24"),
            bool(settings.bitrix24_portal and settings.bitrix24_app_token),
            f"portal {settings.bitrix24_portal}, application token set",
            "THANKLY_BITRIX24_PORTAL / _APP_TOKEN are",
            None if settings.bitrix24_rest_url else "THANKLY_BITRIX24_REST_URL",
            ask,
        )
    )


def check_amocrm(settings: Settings) -> list[Finding]:
    from worker.crm.amocrm.api import from_settings

    def ask() -> list[Finding]:
        account = from_settings(settings).account()
        found = [
            Finding(True, f"token accepted: account {account.get('name')} (id {account.get('id')})")
        ]
        wanted = settings.amocrm_account_id
        if wanted and str(account.get("id")) != wanted:
            found.append(
                Finding(
                    False,
                    f"THANKLY_AMOCRM_ACCOUNT_ID is {wanted}, "
                    f"but the token's account is {account.get('id')}",
                )
            )
        return found

    return _findings(
        Connection(
            "webhook URL (event: lead status changed): "
            + _url(settings, "/webhooks/amocrm?secret=<THANKLY_AMOCRM_WEBHOOK_SECRET>"),
            bool(settings.amocrm_subdomain and settings.amocrm_webhook_secret),
            f"account {settings.amocrm_subdomain}, webhook secret set",
            "THANKLY_AMOCRM_SUBDOMAIN / _WEBHOOK_SECRET are",
            None if settings.amocrm_token else "THANKLY_AMOCRM_TOKEN",
            ask,
        )
    )


CHECKS = {
    "hubspot": check_hubspot,
    "pipedrive": check_pipedrive,
    "bitrix24": check_bitrix24,
    "amocrm": check_amocrm,
}
