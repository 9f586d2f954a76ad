"""`thankly crm check hubspot|pipedrive`: is the connection set up, and does the CRM agree?

Each check says what it found in one line, and what to do when something is missing; it
calls the CRM's API once or twice (never writing), so it is safe to run at any time.
"""

from __future__ import annotations

from dataclasses import dataclass

from worker.retry import CallError
from worker.settings import Settings


@dataclass(frozen=True)
class Finding:
    ok: bool
    text: str


def _stages(value: str) -> list[str]:
    return [s.strip() for s in value.split(",") if s.strip()]


def check_hubspot(settings: Settings) -> list[Finding]:
    from worker.crm.hubspot.api import from_settings

    url = f"{settings.public_url.rstrip('/')}/webhooks/hubspot"
    found = [Finding(True, f"webhook URL to paste into the app's Webhooks settings: {url}")]
    found.append(
        Finding(True, "client secret set (webhook signatures are verified)")
        if settings.hubspot_client_secret is not None
        else Finding(
            False, "THANKLY_HUBSPOT_CLIENT_SECRET is not set: /webhooks/hubspot answers 404"
        )
    )
    if settings.hubspot_token is None:
        found.append(Finding(False, "THANKLY_HUBSPOT_TOKEN is not set: deals cannot be read"))
        return found
    try:
        stages = from_settings(settings).deal_stages()
    except CallError as exc:
        found.append(Finding(False, f"the API refused: {exc}"))
        return found
    found.append(Finding(True, f"API token accepted; {len(stages)} deal stages in the account"))
    for name, configured in (
        ("THANKLY_HUBSPOT_WON_STAGES", _stages(settings.hubspot_won_stages)),
        ("THANKLY_HUBSPOT_LOST_STAGES", _stages(settings.hubspot_lost_stages)),
    ):
        for stage in configured:
            if stage in stages:
                found.append(Finding(True, f"{name}: {stage} is \u201c{stages[stage]}\u201d"))
            else:
                known = ", ".join(f"{k} ({v})" for k, v in sorted(stages.items()))
                found.append(Finding(False, f"{name}: no stage {stage!r}; the account has {known}"))
    return found


def check_pipedrive(settings: Settings) -> list[Finding]:
    from worker.crm.pipedrive.api import from_settings

    url = f"{settings.public_url.rstrip('/')}/webhooks/pipedrive"
    found = [Finding(True, f"webhook URL (version 2.0, event change.deal): {url}")]
    if settings.pipedrive_webhook_user and settings.pipedrive_webhook_password is not None:
        found.append(Finding(True, "webhook basic-auth user and password set"))
    else:
        found.append(
            Finding(
                False,
                "THANKLY_PIPEDRIVE_WEBHOOK_USER / _PASSWORD are not set: "
                "/webhooks/pipedrive answers 404",
            )
        )
    if settings.pipedrive_token is None:
        found.append(Finding(False, "THANKLY_PIPEDRIVE_TOKEN is not set: deals cannot be read"))
        return found
    try:
        me = from_settings(settings).me()
    except CallError as exc:
        found.append(Finding(False, f"the API refused: {exc}"))
        return found
    company = me.get("company_name") or me.get("company_domain") or "the company"
    found.append(Finding(True, f"API token accepted: {me.get('name')} at {company}"))
    return found


def check_bitrix24(settings: Settings) -> list[Finding]:
    from worker.crm.bitrix24.api import METHODS, from_settings

    url = f"{settings.public_url.rstrip('/')}/webhooks/bitrix24"
    found = [Finding(True, f"outbound webhook URL (events ONCRMDEALUPDATE, ONCRMDEALADD): {url}")]
    if settings.bitrix24_portal and settings.bitrix24_application_token is not None:
        found.append(Finding(True, f"portal {settings.bitrix24_portal}, application token set"))
    else:
        found.append(
            Finding(
                False,
                "THANKLY_BITRIX24_PORTAL / _APPLICATION_TOKEN are not set: "
                "/webhooks/bitrix24 answers 404",
            )
        )
    if settings.bitrix24_webhook_url is None:
        found.append(
            Finding(False, "THANKLY_BITRIX24_WEBHOOK_URL is not set: deals cannot be read")
        )
        return found
    try:
        me = from_settings(settings).result(METHODS["profile"]) or {}
    except CallError as exc:
        found.append(Finding(False, f"the portal refused: {exc}"))
        return found
    who = " ".join(str(me.get(k) or "") for k in ("NAME", "LAST_NAME")).strip() or "a user"
    found.append(Finding(True, f"incoming webhook accepted: it acts as {who}"))
    return found


def check_amocrm(settings: Settings) -> list[Finding]:
    from worker.crm.amocrm.api import from_settings

    url = (
        f"{settings.public_url.rstrip('/')}/webhooks/amocrm?secret=<THANKLY_AMOCRM_WEBHOOK_SECRET>"
    )
    found = [Finding(True, f"webhook URL (event: lead status changed): {url}")]
    if settings.amocrm_subdomain and settings.amocrm_webhook_secret is not None:
        found.append(Finding(True, f"account {settings.amocrm_subdomain}, webhook secret set"))
    else:
        found.append(
            Finding(
                False,
                "THANKLY_AMOCRM_SUBDOMAIN / _WEBHOOK_SECRET are not set: "
                "/webhooks/amocrm answers 404",
            )
        )
    if settings.amocrm_token is None:
        found.append(Finding(False, "THANKLY_AMOCRM_TOKEN is not set: leads cannot be read"))
        return found
    try:
        account = from_settings(settings).account()
    except CallError as exc:
        found.append(Finding(False, f"the API refused: {exc}"))
        return found
    found.append(
        Finding(True, f"token accepted: account {account.get('name')} (id {account.get('id')})")
    )
    if settings.amocrm_account_id and str(account.get("id")) != settings.amocrm_account_id:
        found.append(
            Finding(
                False,
                f"THANKLY_AMOCRM_ACCOUNT_ID is {settings.amocrm_account_id}, "
                f"but the token's account is {account.get('id')}",
            )
        )
    return found


CHECKS = {
    "hubspot": check_hubspot,
    "pipedrive": check_pipedrive,
    "bitrix24": check_bitrix24,
    "amocrm": check_amocrm,
}
