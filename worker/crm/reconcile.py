"""Catching up on webhooks that never came: `thankly crm reconcile` and its scheduler job.

Webhooks get lost (Pipedrive drops events while it bans a failing URL; HubSpot stops
retrying after a while). For each natively connected CRM, reconciliation asks the API for
deals won since the watermark and stores each one the webhooks missed as an inbox row of
that source, which then takes the webhook's path (translate, plan, send).

What "missed" means: the last deal-status event Thankly holds for the deal is not
`deal.closed` (none at all, or a reopen or a loss since). Deals won in the last
SETTLE are left to their webhooks, and the watermark stops there, so the next run looks
at them again. A run is skipped while webhooks from that CRM still wait in the inbox (they
may be the ones it would otherwise add twice). Reconciled rows have ids of their own
(`…:reconcile:<deal>:<won at>`), so running it twice stores nothing new. The first run
only marks where the next one starts: deals won before Thankly was connected are not
thanked unless an operator asks (`thankly crm reconcile --since …`).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol, cast

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from worker.intake.inbox import accept_batch
from worker.intake.sources import RawEvent
from worker.models import CrmSync, Event, InboxItem, InboxStatus

if TYPE_CHECKING:
    from worker.runtime import Runtime

log = logging.getLogger(__name__)

SETTLE = timedelta(minutes=10)
DEAL_STATUS_EVENTS = ("deal.closed", "deal.lost", "deal.reopened")


@dataclass(frozen=True)
class WonDeal:
    deal_id: str
    won_at: datetime
    raw: RawEvent  # the inbox row to store if the webhooks missed it


class Reconcilable(Protocol):
    name: str

    def won_since(self, since: datetime) -> list[WonDeal]:
        """Deals won (or changed while won) since `since`, through the CRM's API."""
        ...


@dataclass
class Report:
    source: str
    since: str
    until: str
    found: int = 0
    already: int = 0
    added: int = 0
    inbox_ids: tuple[int, ...] = ()
    skipped: str | None = None


def reconcile(
    factory: sessionmaker[Session],
    crm: Reconcilable,
    now: datetime,
    since: datetime | None = None,
) -> Report:
    """One catch-up for one CRM. `since` overrides the stored watermark. The first run
    without `since` only sets the watermark: deals won before Thankly was connected get
    no letter unless someone asks for them."""
    until = now - SETTLE
    with factory() as session:
        state = session.scalar(select(CrmSync).where(CrmSync.source == crm.name))
        stored = state.reconciled_until if state else None
        waiting = session.scalar(
            select(func.count())
            .select_from(InboxItem)
            .where(InboxItem.source == crm.name, InboxItem.status == InboxStatus.PENDING)
        )
    start = since or stored or until
    report = Report(crm.name, start.isoformat(), until.isoformat())
    if since is None and stored is None:
        report.skipped = "first run: won deals are reconciled from now on (--since looks back)"
        _save(factory, crm.name, until, now, report)
        return report
    if waiting:
        report.skipped = f"{waiting} {crm.name} webhooks are still being processed"
        return report
    found = [d for d in crm.won_since(start) if d.won_at <= until]
    report.found = len(found)
    missed = [d for d in found if not _closed_already(factory, crm.name, d.deal_id)]
    report.already = len(found) - len(missed)
    if missed:
        # Left to the scheduler's next sweep (seconds away): reconciliation publishes
        # nothing itself, wherever it runs (a worker, or `thankly crm reconcile`).
        accepted = accept_batch(factory, crm.name, [d.raw for d in missed], now, enqueued=False)
        report.inbox_ids = tuple(a.inbox_id for a in accepted if not a.duplicate)
        report.added = len(report.inbox_ids)
    for deal in missed:
        log.info(
            "%s deal %s won without a webhook: added by reconciliation", crm.name, deal.deal_id
        )
    _save(factory, crm.name, until, now, report)
    return report


def _closed_already(factory: sessionmaker[Session], source: str, deal_id: str) -> bool:
    with factory() as session:
        last = session.scalar(
            select(Event.type)
            .where(
                Event.source == source,
                Event.deal_id == deal_id,
                Event.type.in_(DEAL_STATUS_EVENTS),
            )
            .order_by(Event.occurred_at.desc(), Event.id.desc())
            .limit(1)
        )
    return last == "deal.closed"


def _save(
    factory: sessionmaker[Session], source: str, until: datetime, now: datetime, report: Report
) -> None:
    ensure_state(factory, source, now)
    with factory.begin() as session:
        session.execute(
            update(CrmSync)
            .where(CrmSync.source == source)
            .values(reconciled_until=until, last_report=asdict(report), updated_at=now)
        )


def ensure_state(factory: sessionmaker[Session], source: str, now: datetime) -> None:
    """The source's row, created on first use (two processes may race: one wins)."""
    with factory() as session:
        if session.scalar(select(CrmSync.id).where(CrmSync.source == source)) is not None:
            return
    try:
        with factory.begin() as session:
            session.add(CrmSync(source=source, next_run_at=now, updated_at=now))
    except IntegrityError:
        pass


def claim_due_runs(
    factory: sessionmaker[Session], sources: list[str], now: datetime, every: timedelta
) -> list[int]:
    """The sync rows whose scheduled run is due, each claimed by a conditional update so
    that one process, once per interval, runs it."""
    claimed = []
    for source in sources:
        ensure_state(factory, source, now)
        with factory.begin() as session:
            changed = session.execute(
                update(CrmSync)
                .where(CrmSync.source == source, CrmSync.next_run_at <= now)
                .values(next_run_at=now + every, updated_at=now)
            )
            if getattr(changed, "rowcount", 0) == 1:
                claimed.append(
                    session.scalar(select(CrmSync.id).where(CrmSync.source == source)) or 0
                )
    return claimed


# --- wired to a runtime: the CLI, the scheduler and the job -----------------------------


def connected(runtime: Runtime) -> dict[str, Reconcilable]:
    """The natively connected CRMs that can be reconciled: webhooks and API token set."""
    tokens = {
        "hubspot": runtime.settings.hubspot_token,
        "pipedrive": runtime.settings.pipedrive_token,
        "bitrix24": runtime.settings.bitrix24_rest_url,
        "amocrm": runtime.settings.amocrm_token,
    }
    found: dict[str, Reconcilable] = {}
    for name, token in tokens.items():
        source = runtime.source(name)
        if token is not None and source is not None and hasattr(source, "won_since"):
            found[name] = cast(Reconcilable, source)
    return found


def run(runtime: Runtime, name: str, since: datetime | None = None) -> Report:
    """Reconcile one connected CRM; the scheduler's next sweep enqueues what it added."""
    crm = connected(runtime).get(name)
    if crm is None:
        raise LookupError(
            f"{name} is not connected (its webhook credentials and API token must be set)"
        )
    return reconcile(runtime.session_factory, crm, runtime.clock.now(), since)


def run_claimed(runtime: Runtime, sync_id: int) -> str:
    """The scheduler's job: reconcile the CRM of one claimed crm_sync row."""
    with runtime.session_factory() as session:
        name = session.scalar(select(CrmSync.source).where(CrmSync.id == sync_id))
    if name is None or name not in connected(runtime):
        return "skipped"
    report = run(runtime, name)
    if report.skipped and report.skipped.startswith("first run"):
        return "started"
    if report.skipped:
        return "deferred"
    return "reconciled"
