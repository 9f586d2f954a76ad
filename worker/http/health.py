"""Liveness and readiness."""

from __future__ import annotations

import logging

import redis
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool

from worker.runtime import Runtime

log = logging.getLogger(__name__)
router = APIRouter()


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process answers. Says nothing about its dependencies (that is /readyz)."""
    return {"status": "ok"}


def _check_database(runtime: Runtime) -> str:
    try:
        with runtime.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        log.warning("readiness: database unreachable: %s", type(exc).__name__)
        return f"unreachable ({type(exc).__name__})"
    return "ok"


def _check_broker(runtime: Runtime) -> str:
    url = runtime.settings.effective_broker_url
    if url.startswith("memory://"):
        return "ok"  # in-process broker: reachable whenever we are
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:
        log.warning("readiness: broker unreachable: %s", type(exc).__name__)
        return f"unreachable ({type(exc).__name__})"
    return "ok"


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    runtime: Runtime = request.app.state.runtime
    checks = {
        "database": await run_in_threadpool(_check_database, runtime),
        "broker": await run_in_threadpool(_check_broker, runtime),
    }
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "unavailable", "checks": checks},
        status_code=200 if ready else 503,
    )
