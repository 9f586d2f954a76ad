"""`/admin`: the `thankly letters` operations as a JSON API, for a bearer token.

Off (404) while THANKLY_ADMIN_TOKEN is unset. The token is compared in constant time, on
fixed-length digests, so neither its content nor its length can be guessed by timing.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, HTTPException, Path, Query, Request, Response
from pydantic import AfterValidator, AwareDatetime, BaseModel, Field

from worker import suppressions
from worker.admin import find, operations
from worker.admin.audit import audit_log
from worker.admin.stats import stats as letter_stats
from worker.admin.timeline import letter_timeline
from worker.experiments.report import UnknownExperiment, list_experiments, report
from worker.http.client_address import client_address
from worker.planning.rules import RulesError
from worker.planning.rules_model import RuleSet
from worker.runtime import Runtime

router = APIRouter(prefix="/admin", tags=["admin"])

# Edge values are refused here, with a 422 that says what is wrong, rather than by the
# database with a 500: ids are BIGINT, a page past a million would be an offset no table
# of letters reaches, a long id list is a query SQLite refuses.
BIGINT_MAX = 2**63 - 1
MAX_PAGE = 1_000_000
MAX_IDS = 1000
RowId = Annotated[int, Field(ge=1, le=BIGINT_MAX)]
Ids = Annotated[list[RowId], Field(max_length=MAX_IDS)]


def _text(value: str) -> str:
    # PostgreSQL stores no NUL in text, and no address, letter name or reason has one.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


def _moment(value: datetime) -> datetime:
    # Year 1 at +14:00 is not a UTC time Python can even represent; no letter is older
    # than this century or due after the next.
    try:
        utc = value.astimezone(UTC)
    except OverflowError:
        raise ValueError("is out of range") from None
    if not 1970 <= utc.year <= 2200:
        raise ValueError("must be between 1970 and 2200")
    return utc


Text = Annotated[str, AfterValidator(_text)]
Moment = Annotated[AwareDatetime, AfterValidator(_moment)]


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def require_admin(request: Request, authorization: Annotated[str | None, Header()] = None) -> str:
    """The actor for the audit log, or 404 (API off) / 401 (no or wrong token)."""
    token = request.app.state.runtime.settings.admin_token
    if token is None:
        raise HTTPException(404, "the admin API is off: THANKLY_ADMIN_TOKEN is not set")
    scheme, _, given = (authorization or "").partition(" ")
    valid = hmac.compare_digest(_digest(given), _digest(token.get_secret_value()))
    if scheme.lower() != "bearer" or not valid:
        raise HTTPException(
            401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"}
        )
    settings = request.app.state.runtime.settings
    host = client_address(request, settings.trusted_proxy_networks) or "?"
    return f"admin-api ({host})"


Actor = Annotated[str, Depends(require_admin)]


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


class Selection(BaseModel):
    """Which letters: ids, or a filter (status is then required)."""

    ids: Ids = Field(default_factory=list)
    status: find.StatusName | None = None
    letter: Text | None = None
    since: Moment | None = None
    until: Moment | None = None
    error_class: find.ErrorClass | None = None
    reason: Text | None = Field(default=None, max_length=2000)

    def to_filter(self) -> find.LetterFilter:
        if not self.ids and not self.status:
            raise HTTPException(422, "give ids, or a filter with status (e.g. failed)")
        return find.LetterFilter(
            ids=self.ids,
            status=self.status,
            letter=self.letter,
            since=self.since,
            until=self.until,
            error_class=self.error_class,
        )


class ReplayRequest(Selection):
    dry_run: bool = False
    force: bool = False
    reuse_rendered: bool = False


class IdsRequest(BaseModel):
    ids: Ids = Field(min_length=1)
    reason: Text | None = Field(default=None, max_length=2000)


class SendNowRequest(IdsRequest):
    ignore_window: bool = False


@router.get("/letters")
def list_letters(
    request: Request,
    actor: Actor,
    status: find.StatusName | None = None,
    letter: Text | None = None,
    contact: Text | None = None,
    since: Moment | None = None,
    until: Moment | None = None,
    error_class: find.ErrorClass | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1,
) -> dict[str, Any]:
    """Newest first, as `thankly letters list`; a typo in status or error_class is a 422
    that lists the valid values."""
    flt = find.LetterFilter(
        status=status,
        letter=letter,
        contact=contact,
        since=since,
        until=until,
        error_class=error_class,
        limit=limit,
        offset=(page - 1) * limit,
        newest_first=True,
    )
    factory = _runtime(request).session_factory
    rows = [find.summary(x) for x in find.find_letters(factory, flt)]
    total = find.count_letters(factory, flt)
    pages = max(1, -(-total // limit))
    return {"letters": rows, "page": page, "pages": pages, "total": total, "more": page < pages}


@router.get("/letters/{letter_id}")
def show_letter(
    letter_id: Annotated[int, Path(ge=1, le=BIGINT_MAX)], request: Request, actor: Actor
) -> dict[str, Any]:
    story = letter_timeline(_runtime(request).session_factory, letter_id)
    if story is None:
        raise HTTPException(404, f"no letter #{letter_id}")
    return story


@router.post("/letters/replay")
def replay(body: ReplayRequest, request: Request, actor: Actor) -> dict[str, Any]:
    runtime = _runtime(request)
    outcome = operations.replay(
        runtime.session_factory,
        body.to_filter(),
        runtime.clock.now(),
        actor=actor,
        reason=body.reason,
        rate_per_second=runtime.settings.replay_rate_per_second,
        force=body.force,
        reuse_rendered=body.reuse_rendered,
        dry_run=body.dry_run,
    )
    return {"dry_run": body.dry_run, **outcome.as_dict()}


@router.post("/letters/cancel")
def cancel(body: IdsRequest, request: Request, actor: Actor) -> dict[str, Any]:
    runtime = _runtime(request)
    return operations.cancel(
        runtime.session_factory, body.ids, runtime.clock.now(), actor=actor, reason=body.reason
    ).as_dict()


@router.post("/letters/send-now")
def send_now(body: SendNowRequest, request: Request, actor: Actor) -> dict[str, Any]:
    runtime = _runtime(request)
    defaults = rules_in_force(runtime).defaults
    return operations.send_now(
        runtime.session_factory,
        body.ids,
        runtime.clock.now(),
        actor=actor,
        reason=body.reason,
        window=defaults.send_window,
        default_timezone=defaults.timezone,
        ignore_window=body.ignore_window,
    ).as_dict()


@router.get("/stats")
def stats(request: Request, actor: Actor, since: Moment | None = None) -> dict[str, Any]:
    return {"stats": letter_stats(_runtime(request).session_factory, since)}


@router.get("/experiments")
def experiments(request: Request, actor: Actor) -> dict[str, Any]:
    runtime = _runtime(request)
    return {"experiments": list_experiments(runtime.session_factory, rules_in_force(runtime))}


ExperimentName = Annotated[
    str, Path(min_length=1, max_length=128, pattern=r"^[a-z0-9][a-z0-9_-]*$")
]


@router.get("/experiments/{name}")
def experiment_report(
    request: Request, actor: Actor, name: ExperimentName, since: Moment | None = None
) -> dict[str, Any]:
    """The same report as `thankly experiments report NAME --json`."""
    runtime = _runtime(request)
    rules = rules_in_force(runtime)
    try:
        return report(runtime.session_factory, rules, name, runtime.clock.now(), since)
    except UnknownExperiment:
        raise HTTPException(404, f"no experiment {name!r}") from None


def rules_in_force(runtime: Runtime) -> RuleSet:
    """The rules in force; a file that never loaded is a 503 saying why (the dashboard's
    pages too)."""
    try:
        return runtime.rules.get()
    except RulesError as exc:
        raise HTTPException(503, f"the rules file is not valid: {exc}") from None


@router.get("/audit")
def audit(
    request: Request,
    actor: Actor,
    letter_id: Annotated[int | None, Query(ge=1, le=BIGINT_MAX)] = None,
    email: Text | None = None,
) -> dict[str, Any]:
    return {"entries": audit_log(_runtime(request).session_factory, letter_id, email)}


# --- suppressions: who gets no letters (worker/suppressions.py) --------------------------


class SuppressRequest(BaseModel):
    email: Text = Field(max_length=320)
    reason: Text = Field(min_length=1, max_length=2000)


class LiftRequest(BaseModel):
    reason: Text = Field(min_length=1, max_length=2000)


@router.get("/suppressions")
def list_suppressions(
    request: Request, actor: Actor, contact: Text | None = None
) -> dict[str, Any]:
    """Suppressed addresses, newest first (as `thankly suppressions list --json`)."""
    try:
        rows = suppressions.list_suppressions(_runtime(request).session_factory, contact)
    except suppressions.SuppressionError as exc:
        raise HTTPException(422, f"contact: {exc}") from None
    return {"suppressions": rows, "total": len(rows)}


@router.post("/suppressions")
def add_suppression(
    body: SuppressRequest, request: Request, response: Response, actor: Actor
) -> dict[str, Any]:
    """201 when the address was added (its pending letters suppressed), 200 when it was
    suppressed already. The CRM is not told: only a recipient's own unsubscribe is."""
    runtime = _runtime(request)
    try:
        done = suppressions.add(
            runtime.session_factory, body.email, body.reason, runtime.clock.now(), actor=actor
        )
    except suppressions.SuppressionError as exc:
        raise HTTPException(422, str(exc)) from None
    response.status_code = 201 if done.added else 200
    return done.as_dict()


@router.delete("/suppressions/{email}")
def remove_suppression(
    email: Annotated[Text, Path(max_length=320)],
    request: Request,
    actor: Actor,
    reason: Annotated[Text | None, Query(max_length=2000)] = None,
    body: Annotated[LiftRequest | None, Body()] = None,
) -> dict[str, Any]:
    """Lift a suppression; the reason comes as `?reason=` or `{"reason": …}`. Letters
    already suppressed stay suppressed. 404 when the address is not on the list."""
    why = body.reason if body is not None else reason
    if not why or not why.strip():
        raise HTTPException(422, 'give a reason: ?reason=… or {"reason": "…"}')
    runtime = _runtime(request)
    try:
        done = suppressions.remove(
            runtime.session_factory, email, why, runtime.clock.now(), actor=actor
        )
    except suppressions.NotSuppressed as exc:
        raise HTTPException(404, str(exc)) from None
    except suppressions.SuppressionError as exc:
        raise HTTPException(422, str(exc)) from None
    return done.as_dict()
