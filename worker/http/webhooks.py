"""POST /webhooks/{source}: authenticate, split, store, answer; enqueued in batches.

The checks run cheapest-first and nothing is stored until all of them pass, so a rejected
request leaves no trace but a log line. A client mistake is always a 4xx. What a request
must look like is the source's business (worker/intake/sources.py); this route only reads
the body within the cap and hands the events a source accepted to the process's group
commit (worker/intake/writer.py), which answers once they are committed and publishes the
new rows in batches (worker/intake/publisher.py).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from worker.http.body import BadContentLength, BodyTooLarge, read_capped
from worker.intake.sources import Refused
from worker.intake.writer import GroupCommit
from worker.metrics import WEBHOOKS
from worker.runtime import Runtime

log = logging.getLogger(__name__)
router = APIRouter()

MAX_EVENT_ID = 255


def _reject(status: int, error: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"status": "rejected", "error": error, **extra}, status_code=status)


_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "Seen before (same event ids), or nothing to act on: nothing stored"},
    202: {"description": "Stored; it will be processed shortly"},
    400: {"description": "Malformed JSON, or a malformed header"},
    401: {"description": "Missing or bad signature, or a stale timestamp"},
    404: {"description": "No source of that name"},
    413: {"description": "Body larger than the cap (256 KiB)"},
    415: {"description": "Content-Type is not what the source posts"},
    422: {"description": "Well-formed but not a valid event; `problems` lists each field"},
}


@router.post("/webhooks/{source}", status_code=202, responses=_RESPONSES)
async def webhook(source: str, request: Request) -> JSONResponse:
    response = await _answer(source, request)
    _count(request.app.state.runtime, source, response)
    return response


def _count(runtime: Runtime, source: str, response: JSONResponse) -> None:
    # Only registered names become label values: a scan of random URLs adds none.
    name = source if runtime.source(source) is not None else "unknown"
    code = response.status_code
    if code == 202:
        outcome = "accepted"
    elif code == 200:
        outcome = str(json.loads(bytes(response.body)).get("status", "duplicate"))
    else:
        outcome = "rejected"
    WEBHOOKS.labels(name, outcome, str(code) if outcome == "rejected" else "").inc()


async def _answer(source: str, request: Request) -> JSONResponse:
    runtime: Runtime = request.app.state.runtime
    sender = runtime.source(source)
    if sender is None:
        return _reject(404, f"no webhook source named {source[:40]!r}")
    limit = runtime.settings.webhook_max_bytes

    try:
        body = await read_capped(request, limit)
    except BodyTooLarge:
        return _reject(413, f"body is larger than {limit} bytes")
    except BadContentLength:
        return _reject(400, "Content-Length is not a number")

    problem = sender.media_type_problem(request.headers.get("content-type"))
    if problem is not None:
        return _reject(415, problem)

    try:
        # As sent, still percent-encoded: a source that signs the URL decodes what it must.
        raw_path = request.scope.get("raw_path") or request.url.path.encode()
        query = request.scope.get("query_string") or b""
        target = raw_path.decode("latin-1") + (f"?{query.decode('latin-1')}" if query else "")
        events = sender.receive(request.headers, body, runtime.clock.now(), target)
    except Refused as refused:
        if refused.status == 401:
            log.info("%s webhook rejected: %s", source, refused.error)
        return _reject(refused.status, refused.error, **refused.extra)
    if not events:
        # Authentic, but nothing Thankly acts on (a CRM posts every change it was asked
        # to): acknowledged so that the sender does not retry it.
        return JSONResponse({"status": "ignored"}, 200)
    if any(len(e.event_id) > MAX_EVENT_ID for e in events):
        return _reject(400, f"an event id is longer than {MAX_EVENT_ID} characters")

    writer: GroupCommit = request.app.state.inbox_writer
    # Committed when this returns, and the new rows handed to the publisher.
    accepted = await writer.store(source, events, runtime.clock.now())
    new = [a for a in accepted if not a.duplicate]
    for item in new:
        log.info("accepted %s webhook %s as inbox #%s", source, item.event_id, item.inbox_id)
    status, code = ("accepted", 202) if new else ("duplicate", 200)
    if len(accepted) == 1:
        return JSONResponse({"status": status, "event_id": accepted[0].event_id}, code)
    return JSONResponse(
        {
            "status": status,
            "event_ids": [a.event_id for a in accepted],
            "new": len(new),
            "duplicates": len(accepted) - len(new),
        },
        code,
    )
