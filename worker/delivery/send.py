"""Delivering one letter, exactly once or with the precise reason why not.

    queued ──claim──▶ sending ──▶ sent
                         ├──▶ failed     anything before the first byte went out (render,
                         │               build), 5xx, or too many attempts
                         ├──▶ unknown    connection lost after the content was sent (or the
                         │               sending timeout; a late answer then replaces it)
                         ├──▶ suppressed unsubscribed since it was planned
                         └──▶ scheduled  transient failures: due again later

`send_letters` takes a few letters at a time (one task, one read of their rows and
events) and sends them one after the other, each with two transactions around its send.
**Claim**: the letter is rendered and built first; then one conditional update takes it
`queued → sending` only if no suppression names its address, and stores the rendering
(a redelivered task, a cancelled letter or a second worker finds nothing to do). Anything
unusual (a suppressed address, a letter that cannot be built) goes through `prepare`, the
careful path: claim, check, build, and fail in the same transaction; nothing can have left
yet. **Transmit**: the Sender, with short in-task retries (each failed try is an Attempt
row). **Record**: the accepted try, the final status and its CRM activity, in one
transaction. Each letter is claimed just before its own send, so a worker that dies in the
middle of a batch leaves the rest `queued` for the sweep, never `sending`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from email.message import EmailMessage
from enum import StrEnum

from sqlalchemy import bindparam, exists, insert, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from worker.clock import Clock
from worker.crm.activities import record
from worker.delivery.senders import Sender, SendError
from worker.events import GenericEvent
from worker.letters.brand import Brand
from worker.letters.compose import Tracking, compose, letter_setup, render
from worker.letters.render import Rendered, Renderer, RenderError
from worker.logs import mask_email
from worker.metrics import LETTER_TRANSITIONS, SEND_ATTEMPTS, SEND_SECONDS
from worker.models import Attempt, Event, Letter, LetterStatus, Suppression
from worker.planning.rules_model import RuleSet
from worker.retry import backoff, call_with_retries
from worker.settings import Settings
from worker.suppressions import suppression_reason
from worker.tracking.hits import unsubscribe_token

log = logging.getLogger(__name__)
MAX_RETRY_DELAY = timedelta(hours=6)
# Waits between tries inside one task; longer pauses reschedule the letter instead.
MAX_WAIT_IN_TASK = 30.0


class SendOutcome(StrEnum):
    """What `send_letter` did; the Celery task returns it."""

    SENT = "sent"
    FAILED = "failed"
    RETRY = "retry"
    UNKNOWN = "unknown"
    SUPPRESSED = "suppressed"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class Delivery:
    """What sending needs besides the letter; built once per process."""

    session_factory: sessionmaker[Session]
    clock: Clock
    renderer: Renderer
    sender: Sender
    settings: Settings
    secret_key: str
    # The rules and brand in force (both follow ops edits without a restart).
    rules: Callable[[], RuleSet]
    brand: Callable[[], Brand]
    sleep: Callable[[float], None] = time.sleep


def unsubscribe_url(settings: Settings, secret_key: str, letter_id: int) -> str:
    return f"{settings.public_url}/u/{unsubscribe_token(secret_key, letter_id)}"


def render_letter(d: Delivery, letter: Letter, event: GenericEvent) -> Rendered:
    """What the letter says: the current template over its stored event, or, for a
    --reuse-rendered replay, what was rendered before. Raises RenderError.
    (Also what `thankly letters preview` shows.)"""
    if letter.reuse_rendered and letter.rendered:
        # An admin replayed it with --reuse-rendered: the exact letter as rendered before.
        stored = Rendered(**letter.rendered)
        # Renderings stored before the locale was kept: the letter row knows it.
        return stored if stored.locale else replace(stored, locale=letter.locale)
    contact = event.data.contact
    rules = d.rules()
    # The rule in force under the letter's rule name (its next step, follow-up, variant),
    # as its experiment arm writes it (an arm may name its own variant).
    rule = rules.rule(letter.rule)
    setup = letter_setup(d.settings, d.brand(), rules, rule.for_arm(letter.arm) if rule else None)
    return render(
        d.renderer,
        setup,
        letter.letter,
        event,
        locale=letter.locale,
        timezone=(contact.timezone if contact else None) or rules.defaults.timezone,
        unsubscribe_url=unsubscribe_url(d.settings, d.secret_key, letter.id),
        now=d.clock.now(),
    )


def letter_message(
    d: Delivery, letter: Letter, event: GenericEvent, rendered: Rendered, now: datetime
) -> EmailMessage:
    """The message as it goes out: tracked links, open pixel, headers from the stored event."""
    return compose(
        rendered,
        event,
        d.settings,
        d.brand(),
        to=letter.contact_email,
        message_id=letter.message_id,
        date=now,
        unsubscribe_url=unsubscribe_url(d.settings, d.secret_key, letter.id),
        tracking=Tracking(letter.id, d.secret_key),
    )


LATE = "the outcome arrived after the sending timeout had marked it unknown"

# The CRM hears of a final outcome once per letter: the key makes a repeat a no-op there.
_ACTIVITY_KEYS = {"email.sent": "sent", "email.failed": "failed"}


def activity_key(kind: str, letter_id: int) -> str:
    return f"{_ACTIVITY_KEYS[kind]}:{letter_id}"


@dataclass(frozen=True)
class Finish:
    """How a letter leaves `sending`: its new status, the columns that go with it, and the
    activity the CRM is told of (None: nothing to tell)."""

    status: LetterStatus
    columns: dict[str, object] = field(default_factory=dict)
    activity: str | None = None
    details: dict[str, object] = field(default_factory=dict)


# The send path's statements, built once: each letter only binds its values (building a
# statement and coercing its values costs more than the server takes to run it). Values
# for SET that a statement does not name come in as parameters of the same name.
_LEAVE = update(Letter).where(
    Letter.id == bindparam("letter_id"), Letter.status == bindparam("from_status")
)
# Leaving `sending` with the accepted attempt counted in the same statement.
_LEAVE_COUNTED = _LEAVE.values(attempt_count=Letter.attempt_count + 1)
_COUNT_ATTEMPT = (
    update(Letter)
    .where(Letter.id == bindparam("letter_id"))
    .values(attempt_count=Letter.attempt_count + 1)
)
_CLAIM = update(Letter).where(
    Letter.id == bindparam("letter_id"),
    Letter.status == LetterStatus.QUEUED,
    ~exists().where(Suppression.email == Letter.contact_email),
)


def finish(
    session: Session,
    letter_id: int,
    now: datetime,
    outcome: Finish,
    letter: Letter | None = None,
    source: str | None = None,
    count_attempt: bool = False,
) -> str | None:
    """Leave `sending`, and tell the CRM in the same transaction (outbox). Returns the
    status left, or None when the letter had moved on and nothing changed. `letter` and
    `source`: the row and its event's source as read in this send (saves reading them
    again for the activity). `count_attempt`: the attempt just added is counted here too
    (one statement fewer than counting it on its own).

    A letter may already be `unknown`: the scheduler's sending timeout marks a send that
    takes too long, while this worker still waits for the server. The server's answer is
    the truth, so it replaces `unknown` (noted in status_reason). Each update is
    conditional and the CRM hears of it only when the row changed: an admin's replay or
    cancel in the meantime is never contradicted by a report of a change that did not
    happen."""
    values = {"status": outcome.status, **outcome.columns}
    left = None
    for status, extra in (
        (LetterStatus.SENDING, {}),
        (LetterStatus.UNKNOWN, {"status_reason": LATE}),
    ):
        # On the session's connection: the ORM's bookkeeping around a plain UPDATE
        # (synchronising loaded rows) is most of its cost, and this path holds none.
        changed = session.connection().execute(
            _LEAVE_COUNTED if count_attempt else _LEAVE,
            {"letter_id": letter_id, "from_status": status, "updated_at": now} | extra | values,
        )
        if getattr(changed, "rowcount", 0) == 1:
            left = status
            LETTER_TRANSITIONS.labels(outcome.status).inc()
            break
    if left is None:
        if count_attempt:  # the attempt happened, whatever the letter became meanwhile
            session.connection().execute(_COUNT_ATTEMPT, {"letter_id": letter_id})
        letter = session.get_one(Letter, letter_id)
        log.error(
            "letter #%s: outcome %s not recorded: the letter is %s by now",
            letter_id,
            outcome.status,
            letter.status,
        )
        return None
    if outcome.activity is not None:
        letter = letter or session.get_one(Letter, letter_id)
        key = activity_key(outcome.activity, letter_id)
        record(session, letter, outcome.activity, key, now, outcome.details, source=source)
    return left


def _add_attempt(
    session: Session,
    letter_id: int,
    started: datetime,
    finished: datetime,
    outcome: str,
    error: SendError | None = None,
    text: str | None = None,
    count: bool = True,
) -> None:
    """The attempt's row, and (unless `finish` counts it) one more on the letter's count."""
    error_class = error.error_class if error else ("render" if text else None)
    connection = session.connection()  # plain statements, no ORM bookkeeping (see finish)
    connection.execute(
        insert(Attempt),
        {
            "letter_id": letter_id,
            "started_at": started,
            "finished_at": finished,
            "outcome": outcome,
            "error_class": error_class,
            "smtp_code": error.code if error else None,
            "error_text": (str(error) if error else text),
        },
    )
    if count:
        connection.execute(_COUNT_ATTEMPT, {"letter_id": letter_id})
    SEND_ATTEMPTS.labels(outcome, error_class or "none").inc()
    SEND_SECONDS.observe(max(0.0, (finished - started).total_seconds()))


def _record(d: Delivery, letter_id: int, started: datetime, error: SendError) -> None:
    """A failed try, in its own transaction (the letter stays `sending` for the next)."""
    with d.session_factory.begin() as session:
        _add_attempt(session, letter_id, started, d.clock.now(), error.kind, error)


@dataclass(frozen=True)
class Prepared:
    """A claimed letter, ready to go: the row (detached once `prepare` commits: read, never
    written through afterwards), what it says, and the message as it goes out."""

    letter: Letter
    rendered: Rendered
    message: EmailMessage
    source: str | None = None  # the event's source, for the CRM activity


def build(
    d: Delivery, letter: Letter, payload: dict[str, object], now: datetime, source: str | None
) -> Prepared:
    """What the letter says and the message that carries it. Raises whatever the template,
    the calendar or the email library refuses."""
    event = GenericEvent.model_validate(payload)
    rendered = render_letter(d, letter, event)
    message = letter_message(d, letter, event, rendered, now)
    return Prepared(letter, rendered, message, source)


def prepare(d: Delivery, letter_id: int, now: datetime) -> Prepared | SendOutcome:
    """One transaction: take the letter `queued → sending`, check the address is still
    welcome, render and build it, and keep the rendering on the row (for a
    --reuse-rendered replay). Nothing can have left yet, so a letter that cannot be built
    fails here, with its error, in the same transaction."""
    with d.session_factory.begin() as session:
        letter = session.scalars(
            update(Letter)
            .where(Letter.id == letter_id, Letter.status == LetterStatus.QUEUED)
            .values(status=LetterStatus.SENDING, updated_at=now)
            .returning(Letter)
        ).one_or_none()
        if letter is None:
            return SendOutcome.SKIPPED  # cancelled, suppressed, or another worker has it
        suppressed = suppression_reason(session, letter.contact_email)
        if suppressed is not None:
            finish(
                session,
                letter_id,
                now,
                Finish(LetterStatus.SUPPRESSED, {"status_reason": suppressed}),
            )
            log.info(
                "letter #%s not sent: suppressed: %s (%s)",
                letter_id,
                suppressed,
                mask_email(letter.contact_email),
            )
            return SendOutcome.SUPPRESSED
        payload, source = session.execute(
            select(Event.payload, Event.source).where(Event.id == letter.event_id)
        ).one()
        try:
            prepared = build(d, letter, payload, now, source)
        except Exception as exc:
            return _not_built(d, session, letter_id, now, exc)
        letter.rendered, letter.reuse_rendered = asdict(prepared.rendered), False
        return prepared


def transmit(d: Delivery, letter: Letter, message: EmailMessage) -> SendError | datetime:
    """Hand the message to the sender, retrying transient failures a few times. Every
    failed try is an Attempt row at once; the accepted one is recorded with the letter's
    outcome. Returns the last error, or when the accepted try began."""
    envelope_from = message["From"].addresses[0].addr_spec
    accepted: list[datetime] = []

    def attempt() -> None:
        started = d.clock.now()
        try:
            d.sender.send(message, envelope_from, letter.contact_email)
        except SendError as exc:
            _record(d, letter.id, started, exc)
            raise
        except Exception as exc:
            # By the Sender contract an unclassified exception means nothing was sent.
            error = SendError("permanent", "mail", f"{type(exc).__name__}: {exc}")
            _record(d, letter.id, started, error)
            raise error from exc
        accepted.append(started)

    try:
        call_with_retries(
            attempt,
            tries=d.settings.smtp_tries,
            wait_base=d.settings.smtp_retry_wait_seconds,
            max_wait=MAX_WAIT_IN_TASK,
            sleep=d.sleep,
        )
    except SendError as exc:
        return exc
    return accepted[0]


@dataclass(frozen=True)
class Queued:
    """A letter as the batch read found it (detached: read, never written through), with
    its event's payload and source."""

    letter: Letter
    payload: dict[str, object]
    source: str | None


def read_queued(d: Delivery, letter_ids: Sequence[int]) -> dict[int, Queued]:
    """The letters of a batch that are still `queued`, with their events: one query."""
    with d.session_factory() as session:
        rows = session.execute(
            select(Letter, Event.payload, Event.source)
            .join(Event, Event.id == Letter.event_id)
            .where(Letter.id.in_(letter_ids), Letter.status == LetterStatus.QUEUED)
        ).all()
    return {letter.id: Queued(letter, payload, source) for letter, payload, source in rows}


def claim_built(d: Delivery, queued: Queued, now: datetime) -> Prepared | None:
    """The usual case in one statement: build the letter, then take it `queued → sending`
    with its rendering, provided it is still queued and no suppression names its address
    (checked in the same statement, so an unsubscribe is never missed). None: something
    is unusual (built with an error, moved on, suppressed); `prepare` then sorts it out."""
    try:
        prepared = build(d, queued.letter, queued.payload, now, queued.source)
    except Exception:
        return None  # `prepare` builds it again and fails it, with its error, in one go
    rendered = asdict(prepared.rendered)
    with d.session_factory.begin() as session:
        claimed = session.connection().execute(
            _CLAIM,
            {
                "letter_id": queued.letter.id,
                "status": LetterStatus.SENDING,
                "updated_at": now,
                "rendered": rendered,
                "reuse_rendered": False,
            },
        )
        if getattr(claimed, "rowcount", 0) != 1:
            return None
    # The detached row, as the CRM activity reads it (subject from the rendering).
    queued.letter.rendered, queued.letter.status = rendered, LetterStatus.SENDING
    return prepared


def send_letters(d: Delivery, letter_ids: Sequence[int]) -> list[SendOutcome]:
    """Each letter in turn: claim, transmit, record; one read for them all. A letter that
    is no longer queued (sent, cancelled, taken by another worker) is skipped."""
    batch = read_queued(d, letter_ids)
    return [
        _send_one(d, letter_id, batch[letter_id]) if letter_id in batch else SendOutcome.SKIPPED
        for letter_id in letter_ids
    ]


def send_letter(d: Delivery, letter_id: int) -> SendOutcome:
    """One letter: `send_letters` with a batch of one."""
    return send_letters(d, [letter_id])[0]


def _send_one(d: Delivery, letter_id: int, queued: Queued) -> SendOutcome:
    """Claim (one transaction), transmit, record the outcome (one transaction)."""
    now = d.clock.now()
    prepared = claim_built(d, queued, now) or prepare(d, letter_id, now)
    if not isinstance(prepared, Prepared):
        return prepared
    letter = prepared.letter
    started = transmit(d, letter, prepared.message)
    if isinstance(started, SendError):
        return _after_failure(d, letter_id, started)
    left = _record_sent(d, prepared, started)
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
    return SendOutcome.SENT


def _record_sent(d: Delivery, prepared: Prepared, started: datetime) -> str | None:
    """The accepted try, the letter `sent` and its CRM activity, in one transaction.

    The message has left, so this write must not be lost to a dead database connection
    (the worker does not test connections before use): it is tried once more on a fresh
    one. A first try whose COMMIT reached the server before the connection died left its
    Attempt row behind, and the second try then finds it and writes nothing."""

    letter, rendered = prepared.letter, prepared.rendered

    def write(session: Session) -> str | None:
        sent_at = d.clock.now()
        _add_attempt(session, letter.id, started, sent_at, "sent", count=False)
        return finish(
            session,
            letter.id,
            sent_at,
            Finish(
                LetterStatus.SENT,
                {"sent_at": sent_at, "last_error": None},
                "email.sent",
                # The text goes to the CRM's timeline (HubSpot logs it on the email).
                {"subject": rendered.subject, "text": rendered.text},
            ),
            letter,
            prepared.source,
            count_attempt=True,
        )

    try:
        with d.session_factory.begin() as session:
            return write(session)
    except DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
        log.warning("letter #%s: the database connection was lost; recording again", letter.id)
    with d.session_factory.begin() as session:
        recorded = session.scalar(
            select(Attempt.id).where(Attempt.letter_id == letter.id, Attempt.started_at == started)
        )
        return LetterStatus.SENT if recorded is not None else write(session)


def _not_built(
    d: Delivery, session: Session, letter_id: int, started: datetime, exc: Exception
) -> SendOutcome:
    detail = str(exc) if isinstance(exc, RenderError) else f"{type(exc).__name__}: {exc}"
    now = d.clock.now()
    _add_attempt(session, letter_id, started, now, "permanent", text=detail)
    finish(
        session,
        letter_id,
        now,
        Finish(
            LetterStatus.FAILED,
            {"last_error": f"render: {detail}"},
            "email.failed",
            {"error": f"render: {detail}"},
        ),
    )
    log.error("letter #%s cannot be rendered: %s", letter_id, detail)
    return SendOutcome.FAILED


def _after_failure(d: Delivery, letter_id: int, exc: SendError) -> SendOutcome:
    now = d.clock.now()
    with d.session_factory.begin() as session:
        attempts = session.scalars(select(Letter.attempt_count).where(Letter.id == letter_id)).one()
        if exc.kind == "unknown":
            finish(session, letter_id, now, Finish(LetterStatus.UNKNOWN, {"last_error": str(exc)}))
            log.error("letter #%s: outcome unknown, not resent: %s", letter_id, exc)
            return SendOutcome.UNKNOWN
        if exc.kind == "permanent" or attempts >= d.settings.max_send_attempts:
            reason = (
                str(exc)
                if exc.kind == "permanent"
                else (f"gave up after {attempts} attempts; last: {exc}")
            )
            finish(
                session,
                letter_id,
                now,
                Finish(
                    LetterStatus.FAILED, {"last_error": reason}, "email.failed", {"error": reason}
                ),
            )
            log.error("letter #%s failed: %s", letter_id, reason)
            return SendOutcome.FAILED
        # Each round of THANKLY_SMTP_TRIES failed tries doubles the rest before the next.
        rounds = max(1, attempts // d.settings.smtp_tries)
        delay = backoff(
            rounds, base=timedelta(seconds=d.settings.retry_delay_seconds), cap=MAX_RETRY_DELAY
        )
        finish(
            session,
            letter_id,
            now,
            Finish(LetterStatus.SCHEDULED, {"due_at": now + delay, "last_error": str(exc)}),
        )
        log.warning("letter #%s: %s; trying again at %s", letter_id, exc, (now + delay).isoformat())
        return SendOutcome.RETRY
