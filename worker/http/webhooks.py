"""POST /webhooks/generic: verify, validate, store, answer, then enqueue.

The checks run cheapest-first and nothing is stored until all of them pass, so a rejected
request leaves no trace but a log line. A client mistake is always a 4xx.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import APIRouter, BackgroundTasks, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from worker.events import InvalidEvent, validate_event
from worker.http.body import BadContentLength, BodyTooLarge, read_capped
from worker.intake.ingest import accept
from worker.intake.signatures import SignatureError, WebhookVerifier
from worker.queue import INGEST_INBOX, send_quietly
from worker.runtime import Runtime

log = logging.getLogger(__name__)
router = APIRouter()

MAX_EVENT_ID = 255


def _reject(status: int, error: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"status": "rejected", "error": error, **extra}, status_code=status)


def _is_json(content_type: str | None) -> bool:
    if not content_type:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "Seen before (same webhook-id): nothing new was stored"},
    202: {"description": "Stored; it will be processed shortly"},
    400: {"description": "Malformed JSON, or a malformed header"},
    401: {"description": "Missing or bad signature, or a stale timestamp"},
    413: {"description": "Body larger than the cap (256 KiB)"},
    415: {"description": "Content-Type is not JSON"},
    422: {"description": "Valid JSON but not a valid event; `problems` lists each field"},
}


@router.post("/webhooks/generic", status_code=202, responses=_RESPONSES)
async def generic_webhook(request: Request, background: BackgroundTasks) -> JSONResponse:
    runtime: Runtime = request.app.state.runtime
    verifier: WebhookVerifier = request.app.state.webhook_verifier
    limit = runtime.settings.webhook_max_bytes

    try:
        body = await read_capped(request, limit)
    except BodyTooLarge:
        return _reject(413, f"body is larger than {limit} bytes")
    except BadContentLength:
        return _reject(400, "Content-Length is not a number")

    if not _is_json(request.headers.get("content-type")):
        return _reject(415, "Content-Type must be application/json")

    try:
        event_id = verifier.verify(request.headers, body, runtime.clock.now())
    except SignatureError as exc:
        log.info("webhook rejected: %s", exc)
        return _reject(401, str(exc))
    if len(event_id) > MAX_EVENT_ID:
        return _reject(400, f"webhook-id is longer than {MAX_EVENT_ID} characters")

    try:
        document = json.loads(body.decode("utf-8"), parse_constant=_no_constants)
    except UnicodeDecodeError:
        return _reject(400, "body is not UTF-8")
    except RecursionError:
        return _reject(400, "JSON is nested too deeply")
    except ValueError as exc:
        return _reject(400, f"malformed JSON: {exc}")

    try:
        event = validate_event(document)
    except InvalidEvent as exc:
        return _reject(422, "not a valid event", problems=exc.problems)

    accepted = await run_in_threadpool(
        accept, runtime.session_factory, "generic", event_id, body, runtime.clock.now()
    )
    if accepted.duplicate:
        return JSONResponse({"status": "duplicate", "event_id": event_id}, status_code=200)

    log.info("accepted %s webhook %s as inbox #%s", event.type, event_id, accepted.inbox_id)
    # Runs after the response is sent; the row is committed already, so a broker hiccup
    # here only delays processing until the sweeper's next pass.
    background.add_task(send_quietly, runtime.dispatcher, INGEST_INBOX, accepted.inbox_id)
    return JSONResponse({"status": "accepted", "event_id": event_id}, status_code=202)
