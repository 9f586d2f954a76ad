"""Delivering one letter, exactly once or with the precise reason why not.

    queued ──claim──▶ sending ──▶ sent
                         ├──▶ failed     anything before the first byte went out (render,
                         │               build), 5xx, or too many attempts
                         ├──▶ unknown    connection lost after the content was sent (or the
                         │               sending timeout; a late answer then replaces it)
                         ├──▶ suppressed unsubscribed since it was planned
                         └──▶ scheduled  transient failures: due again later

The claim is a conditional update (`WHERE status = 'queued'`): a redelivered task, a
cancelled letter or a second worker finds nothing to do. Every SMTP try is an Attempt row.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from worker.clock import Clock
from worker.crm.activities import record
from worker.delivery.senders import Sender, SendError
from worker.letters.message import build_message
from worker.letters.render import Rendered, Renderer, RenderError, build_context
from worker.models import Attempt, Event, Letter, LetterStatus
from worker.planning.planner import mask_email, suppression_reason
from worker.settings import Settings
from worker.tracking.hits import instrument_html, unsubscribe_token

log = logging.getLogger(__name__)
MAX_RETRY_DELAY = timedelta(hours=6)


@dataclass(frozen=True)
class Delivery:
    """What sending needs besides the letter; built once per process."""

    session_factory: sessionmaker[Session]
    clock: Clock
    renderer: Renderer
    sender: Sender
    settings: Settings
    secret_key: str
    default_timezone: Callable[[], str]
    sleep: Callable[[float], None] = time.sleep


def unsubscribe_url(settings: Settings, secret_key: str, letter_id: int) -> str:
    return f"{settings.public_url}/u/{unsubscribe_token(secret_key, letter_id)}"


def render_letter(d: Delivery, letter: Letter, payload: dict[str, Any]) -> Rendered:
    """What the letter says: the current template over its stored event, or, for a
    --reuse-rendered replay, what was rendered before. Raises RenderError.
    (Also what `thankly letters preview` shows.)"""
    if letter.reuse_rendered and letter.rendered:
        # An admin replayed it with --reuse-rendered: the exact letter as rendered before.
        stored = Rendered(**letter.rendered)
        # Renderings stored before the locale was kept: the letter row knows it.
        return stored if stored.locale else replace(stored, locale=letter.locale)
    contact = payload["data"].get("contact") or {}
    context = build_context(
        payload,
        letter.locale,
        contact.get("timezone") or d.default_timezone(),
        next_step_url=d.settings.next_step_url,
        unsubscribe_url=unsubscribe_url(d.settings, d.secret_key, letter.id),
    )
    return d.renderer.render(letter.letter, letter.locale, context)


def letter_message(
    d: Delivery, letter: Letter, payload: dict[str, Any], rendered: Rendered, now: datetime
) -> EmailMessage:
    """The message as it goes out: tracked links, open pixel, headers from the stored event."""
    owner = payload["data"].get("owner") or {}
    unsubscribe = unsubscribe_url(d.settings, d.secret_key, letter.id)
    # Links go through /t/c/ and a pixel reports opens; the plain-text part stays plain.
    html = instrument_html(
        rendered.html, letter.id, d.secret_key, d.settings.public_url, keep=unsubscribe
    )
    return build_message(
        rendered=replace(rendered, html=html),
        mail_from=d.settings.mail_from,
        to=letter.contact_email,
        message_id=letter.message_id,
        date=now,
        owner_name=owner.get("name"),
        owner_email=owner.get("email"),
        unsubscribe_url=unsubscribe,
    )


LATE = "the outcome arrived after the sending timeout had marked it unknown"


def _finish(
    session: Session,
    letter_id: int,
    now: datetime,
    activity: tuple[str, dict[str, object]] | None = None,
    **values: object,
) -> str | None:
    """Leave `sending`, and tell the CRM in the same transaction (outbox). Returns the
    status left, or None when the letter had moved on and nothing changed.

    A letter may already be `unknown`: the scheduler's sending timeout marks a send that
    takes too long, while this worker still waits for the server. The server's answer is
    the truth, so it replaces `unknown` (noted in status_reason). Each update is
    conditional and the CRM hears of it only when the row changed: an admin's replay or
    cancel in the meantime is never contradicted by a report of a change that did not
    happen."""
    left = None
    for status, extra in (
        (LetterStatus.SENDING, {}),
        (LetterStatus.UNKNOWN, {"status_reason": LATE}),
    ):
        changed = session.execute(
            update(Letter)
            .where(Letter.id == letter_id, Letter.status == status)
            .values(updated_at=now, **(extra | values))
        )
        if getattr(changed, "rowcount", 0) == 1:
            left = status
            break
    if left is None:
        letter = session.get_one(Letter, letter_id)
        log.error(
            "letter #%s: outcome %s not recorded: the letter is %s by now",
            letter_id,
            values.get("status"),
            letter.status,
        )
        return None
    if activity is not None:
        kind, details = activity
        letter = session.get_one(Letter, letter_id)
        record(session, letter, kind, f"{kind.split('.')[1]}:{letter_id}", now, details)
    return left


def _record(
    d: Delivery,
    letter_id: int,
    started: datetime,
    outcome: str,
    error: SendError | None = None,
    text: str | None = None,
) -> None:
    with d.session_factory.begin() as session:
        session.add(
            Attempt(
                letter_id=letter_id,
                started_at=started,
                finished_at=d.clock.now(),
                outcome=outcome,
                error_class=error.error_class if error else ("render" if text else None),
                smtp_code=error.code if error else None,
                error_text=(str(error) if error else text),
            )
        )
        session.execute(
            update(Letter)
            .where(Letter.id == letter_id)
            .values(attempt_count=Letter.attempt_count + 1)
        )


def send_letter(d: Delivery, letter_id: int) -> str:
    now = d.clock.now()
    with d.session_factory.begin() as session:
        claimed = session.execute(
            update(Letter)
            .where(Letter.id == letter_id, Letter.status == LetterStatus.QUEUED)
            .values(status=LetterStatus.SENDING, updated_at=now)
        )
        if getattr(claimed, "rowcount", 0) != 1:
            return "skipped"  # cancelled, suppressed, or another worker has it
        letter = session.get_one(Letter, letter_id)
        payload = session.scalars(select(Event.payload).where(Event.id == letter.event_id)).one()
        suppressed = suppression_reason(session, letter.contact_email)
        if suppressed is not None:
            _finish(
                session,
                letter_id,
                now,
                status=LetterStatus.SUPPRESSED,
                status_reason=suppressed,
            )
            log.info(
                "letter #%s not sent: suppressed: %s (%s)",
                letter_id,
                suppressed,
                mask_email(letter.contact_email),
            )
            return "suppressed"

    # Until the sender is handed the message nothing can have reached a server: whatever
    # goes wrong (a template, data the calendar or the email library refuses) fails the
    # letter with the error instead of stranding it in `sending`.
    try:
        rendered = render_letter(d, letter, payload)
        with d.session_factory.begin() as session:
            session.execute(
                update(Letter)
                .where(Letter.id == letter_id)
                .values(rendered=asdict(rendered), reuse_rendered=False)
            )
        message = letter_message(d, letter, payload, rendered, now)
        envelope_from = message["From"].addresses[0].addr_spec
    except Exception as exc:
        return _not_built(d, letter_id, now, exc)

    def attempt() -> None:
        started = d.clock.now()
        try:
            d.sender.send(message, envelope_from, letter.contact_email)
        except SendError as exc:
            _record(d, letter_id, started, exc.kind, exc)
            raise
        except Exception as exc:
            # By the Sender contract an unclassified exception means nothing was sent.
            error = SendError("permanent", "mail", f"{type(exc).__name__}: {exc}")
            _record(d, letter_id, started, error.kind, error)
            raise error from exc
        _record(d, letter_id, started, "sent")

    retrying = Retrying(
        stop=stop_after_attempt(d.settings.smtp_tries),
        wait=wait_random_exponential(multiplier=d.settings.smtp_retry_wait_seconds, max=30),
        retry=retry_if_exception(lambda e: isinstance(e, SendError) and e.kind == "transient"),
        sleep=d.sleep,
        reraise=True,
    )
    try:
        retrying(attempt)
    except SendError as exc:
        return _after_failure(d, letter_id, exc)
    with d.session_factory.begin() as session:
        left = _finish(
            session,
            letter_id,
            d.clock.now(),
            ("email.sent", {"subject": rendered.subject}),
            status=LetterStatus.SENT,
            sent_at=d.clock.now(),
            last_error=None,
        )
    if left == LetterStatus.UNKNOWN:
        log.warning("letter #%s: %s; it was sent, and is recorded as sent", letter_id, LATE)
    # The recipient's domain tells ops where it went; the address itself stays out of logs.
    log.info(
        "sent letter %s %s/%s to …@%s %s",
        letter_id,
        letter.letter,
        letter.locale,
        letter.contact_email.rpartition("@")[2],
        letter.message_id,
    )
    return "sent"


def _not_built(d: Delivery, letter_id: int, started: datetime, exc: Exception) -> str:
    detail = str(exc) if isinstance(exc, RenderError) else f"{type(exc).__name__}: {exc}"
    _record(d, letter_id, started, "permanent", text=detail)
    with d.session_factory.begin() as session:
        _finish(
            session,
            letter_id,
            d.clock.now(),
            ("email.failed", {"error": f"render: {detail}"}),
            status=LetterStatus.FAILED,
            last_error=f"render: {detail}",
        )
    log.error("letter #%s cannot be rendered: %s", letter_id, detail)
    return "failed"


def _after_failure(d: Delivery, letter_id: int, exc: SendError) -> str:
    now = d.clock.now()
    with d.session_factory.begin() as session:
        attempts = session.scalars(select(Letter.attempt_count).where(Letter.id == letter_id)).one()
        if exc.kind == "unknown":
            _finish(session, letter_id, now, status=LetterStatus.UNKNOWN, last_error=str(exc))
            log.error("letter #%s: outcome unknown, not resent: %s", letter_id, exc)
            return "unknown"
        if exc.kind == "permanent" or attempts >= d.settings.max_send_attempts:
            reason = (
                str(exc)
                if exc.kind == "permanent"
                else (f"gave up after {attempts} attempts; last: {exc}")
            )
            _finish(
                session,
                letter_id,
                now,
                ("email.failed", {"error": reason}),
                status=LetterStatus.FAILED,
                last_error=reason,
            )
            log.error("letter #%s failed: %s", letter_id, reason)
            return "failed"
        rounds = max(1, attempts // d.settings.smtp_tries)
        delay = min(
            timedelta(seconds=d.settings.retry_delay_seconds) * 2 ** (rounds - 1), MAX_RETRY_DELAY
        )
        _finish(
            session,
            letter_id,
            now,
            status=LetterStatus.SCHEDULED,
            due_at=now + delay,
            last_error=str(exc),
        )
        log.warning("letter #%s: %s; trying again at %s", letter_id, exc, (now + delay).isoformat())
        return "retry"
