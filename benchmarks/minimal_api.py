"""The baselines for benchmarks.ingest, served by uvicorn like `thankly api`.

`app`: a minimal durable webhook handler (FastAPI): checks the Standard Webhooks HMAC on
the raw body in constant time, parses the JSON, inserts one row and commits before it
answers 202. `bare`: uvicorn's own floor, an ASGI app that answers 202 to anything.
BENCH_DATABASE_URL (a psycopg URL) and BENCH_SECRET configure `app`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import threading
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

KEY = base64.b64decode(os.environ.get("BENCH_SECRET", "whsec_").removeprefix("whsec_"))
DSN = os.environ.get("BENCH_DATABASE_URL", "").replace("postgresql+psycopg://", "postgresql://")
_local = threading.local()
app = FastAPI()


def _connection() -> psycopg.Connection[Any]:
    conn = getattr(_local, "conn", None)
    if conn is None:
        conn = _local.conn = psycopg.connect(DSN)
    return conn


def _store(event_id: str, body: bytes) -> bool:
    conn = _connection()
    with conn.transaction():
        added = conn.execute(
            "INSERT INTO bench_inbox (event_id, body) VALUES (%s, %s) "
            "ON CONFLICT (event_id) DO NOTHING",
            (event_id, body.decode()),
        )
        return added.rowcount == 1


@app.post("/webhooks/generic")
async def webhook(request: Request) -> JSONResponse:
    body = await request.body()
    msg_id = request.headers.get("webhook-id", "")
    timestamp = request.headers.get("webhook-timestamp", "")
    given = request.headers.get("webhook-signature", "").partition(",")[2]
    expected = hmac.new(KEY, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    if not hmac.compare_digest(base64.b64encode(expected).decode(), given):
        return JSONResponse({"status": "rejected"}, status_code=401)
    json.loads(body)
    added = await run_in_threadpool(_store, msg_id, body)
    return JSONResponse({"status": "accepted" if added else "duplicate"}, 202 if added else 200)


async def bare(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    headers = [(b"content-type", b"application/json"), (b"content-length", b"2")]
    await send({"type": "http.response.start", "status": 202, "headers": headers})
    await send({"type": "http.response.body", "body": b"{}"})
