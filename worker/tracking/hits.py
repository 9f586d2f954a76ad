"""Opens, clicks and unsubscribes: signed links in letters, and what a hit records.

Tracking is honest about machines: most pixel loads today are mail-privacy proxies that
fetch every image on delivery. Each open is stored and classified; only human opens are
reported to the CRM (the first one, or every one with THANKLY_CRM_OPENS=all).
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import InstrumentedAttribute, Session, sessionmaker

from worker.crm.activities import record
from worker.letters.context import safe_url
from worker.models import Click, Letter, Open
from worker.tracking.html_links import TRACK_MARK, Attrs, edit_anchors
from worker.tracking.tokens import make_token, read_token

PIXEL_GIF = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00"
    b"\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)

# Opens and clicks stored as rows per letter; later hits are only counted (letters.
# extra_opens / extra_clicks), so a loop of requests cannot grow the tables without limit.
HITS_KEPT_PER_LETTER = 50


# (substring of the user agent, why it is a machine)
MACHINE_AGENTS = (
    ("GoogleImageProxy", "Google image proxy"),
    ("YahooMailProxy", "Yahoo mail proxy"),
    ("Barracuda", "Barracuda link scanner"),
    ("Proofpoint", "Proofpoint scanner"),
)


def classify_open(
    method: str,
    user_agent: str | None,
    sent_at: datetime | None,
    now: datetime,
    machine_seconds: int,
) -> tuple[str, str | None]:
    """('human', None) or ('machine', reason)."""
    agent = (user_agent or "").strip()
    if method.upper() == "HEAD":
        return "machine", "HEAD request"
    if agent == "Mozilla/5.0":
        # Apple Mail Privacy Protection prefetches through proxies with exactly this agent.
        return "machine", "Apple Mail Privacy Protection"
    for marker, reason in MACHINE_AGENTS:
        if marker in agent:
            return "machine", reason
    if not agent:
        return "machine", "no user agent"
    if sent_at is not None and now - sent_at < timedelta(seconds=machine_seconds):
        return "machine", f"within {machine_seconds}s of sending"
    return "human", None


# --- links in letters ----------------------------------------------------------------


def open_token(secret: str, letter_id: int) -> str:
    return make_token(secret, "open", str(letter_id))


def click_token(secret: str, letter_id: int, url: str) -> str:
    return make_token(secret, "click", json.dumps([letter_id, url]))


def unsubscribe_token(secret: str, letter_id: int) -> str:
    return make_token(secret, "unsubscribe", str(letter_id))


def read_letter_id(secret: str, purpose: str, token: str) -> int | None:
    payload = read_token(secret, purpose, token)
    return int(payload) if payload is not None and payload.isdigit() else None


def read_click(secret: str, token: str) -> tuple[int, str] | None:
    payload = read_token(secret, "click", token)
    if payload is None:
        return None
    try:
        letter_id, url = json.loads(payload)
    except (ValueError, TypeError):
        return None
    if not isinstance(letter_id, int) or not isinstance(url, str):
        return None
    return letter_id, url


def _trackable(url: str) -> bool:
    """http(s) links, and the mailto: next step (the click is counted, then the
    redirect opens the reader's mail program)."""
    return safe_url(url) is not None or re.match(r"^mailto:[^\s<>\"']+$", url) is not None


def instrument_html(html: str, letter_id: int, secret: str, public_url: str, keep: str) -> str:
    """Route the template's own links through /t/c/ and add the open pixel.

    Only <a> elements the renderer marked (worker/tracking/html_links.py: links the template wrote,
    never CRM text) are rewritten, on the parsed document. `keep` (the unsubscribe link)
    stays direct: it must work even where tracking is blocked."""

    def rewrite(attrs: Attrs) -> Attrs | None:
        if not any(name == TRACK_MARK for name, _ in attrs):
            return None
        rewritten: Attrs = []
        for name, value in attrs:
            if name == TRACK_MARK:
                continue
            if name == "href" and value and value != keep and _trackable(value):
                value = f"{public_url}/t/c/{click_token(secret, letter_id, value)}"
            rewritten.append((name, value))
        return rewritten

    pixel = (
        f'<img src="{public_url}/t/o/{open_token(secret, letter_id)}.gif" width="1" height="1"'
        ' alt="" style="display:block;border:0;width:1px;height:1px">'
    )
    return edit_anchors(html, rewrite, before_body_end=pixel)


# --- what a hit records ----------------------------------------------------------------


def _lock(session: Session, letter_id: int, counter: InstrumentedAttribute[int]) -> Letter | None:
    """The letter, locked until the transaction ends, so that counting its kept hits and
    adding one is atomic. An UPDATE (of nothing: x = x) locks the row on PostgreSQL and the
    database on SQLite, where SELECT … FOR UPDATE locks nothing."""
    locked = session.execute(
        update(Letter).where(Letter.id == letter_id).values({counter: counter})
    )
    if getattr(locked, "rowcount", 0) != 1:
        return None
    return session.get_one(Letter, letter_id)


def _kept(session: Session, model: type[Open] | type[Click], letter_id: int) -> int:
    query = select(func.count()).select_from(model).where(model.letter_id == letter_id)
    return int(session.scalar(query) or 0)


def _count_surplus(session: Session, letter_id: int, counter: InstrumentedAttribute[int]) -> None:
    session.execute(update(Letter).where(Letter.id == letter_id).values({counter: counter + 1}))


def record_open(
    factory: sessionmaker[Session],
    letter_id: int,
    method: str,
    user_agent: str | None,
    ip: str | None,
    now: datetime,
    machine_seconds: int,
    report: str = "first",
) -> str | None:
    """Store the hit; report a human open to the CRM. Returns the kind, None if no letter.

    The first HITS_KEPT_PER_LETTER hits are stored; later ones only add to
    `letters.extra_opens`, except the letter's first human open, which is always stored
    and reported (machines must not hide that a person read it)."""
    with factory.begin() as session:
        letter = _lock(session, letter_id, Letter.extra_opens)
        if letter is None:
            return None
        kind, reason = classify_open(method, user_agent, letter.sent_at, now, machine_seconds)
        if _kept(session, Open, letter_id) >= HITS_KEPT_PER_LETTER and not (
            kind == "human" and not _has_human_open(session, letter_id)
        ):
            _count_surplus(session, letter_id, Letter.extra_opens)
            return kind
        hit = Open(
            letter_id=letter_id,
            at=now,
            method=method.upper()[:8],
            user_agent=(user_agent or "")[:512] or None,
            ip=ip,
            kind=kind,
            reason=reason,
        )
        session.add(hit)
        session.flush()
        if kind == "human":
            key = f"opened:{letter_id}" if report == "first" else f"opened:{letter_id}:{hit.id}"
            record(session, letter, "email.opened", key, now, {"user_agent": hit.user_agent})
        return kind


def _has_human_open(session: Session, letter_id: int) -> bool:
    query = select(Open.id).where(Open.letter_id == letter_id, Open.kind == "human").limit(1)
    return session.scalar(query) is not None


def record_click(
    factory: sessionmaker[Session],
    letter_id: int,
    url: str,
    user_agent: str | None,
    ip: str | None,
    now: datetime,
) -> bool:
    """Store the click (the first HITS_KEPT_PER_LETTER; later ones only add to
    `letters.extra_clicks`) and tell the CRM once per letter and link."""
    with factory.begin() as session:
        letter = _lock(session, letter_id, Letter.extra_clicks)
        if letter is None:
            return False
        if _kept(session, Click, letter_id) >= HITS_KEPT_PER_LETTER:
            _count_surplus(session, letter_id, Letter.extra_clicks)
        else:
            session.add(
                Click(
                    letter_id=letter_id,
                    at=now,
                    url=url,
                    user_agent=(user_agent or "")[:512] or None,
                    ip=ip,
                )
            )
        # One CRM entry per letter and link, however often it is clicked. Links are signed
        # and only the template's, so a letter has few.
        digest = hashlib.sha256(url.encode()).hexdigest()[:16]
        record(session, letter, "email.clicked", f"clicked:{letter_id}:{digest}", now, {"url": url})
        return True


def letter_locale(factory: sessionmaker[Session], letter_id: int) -> str | None:
    """The letter's locale, for pages that must speak it; None when there is no letter."""
    with factory() as session:
        return session.scalar(select(Letter.locale).where(Letter.id == letter_id))
