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


CHECKS = {"hubspot": check_hubspot, "pipedrive": check_pipedrive}
