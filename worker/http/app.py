"""The FastAPI application, built around one Runtime."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError

from worker.http import admin, health, home, metrics, tracking, webhooks
from worker.intake import sources
from worker.intake.publisher import Publisher
from worker.intake.writer import GroupCommit
from worker.runtime import Runtime
from worker.secrets_store import secret_key
from worker.ui import routes as ui_routes

log = logging.getLogger(__name__)


async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    # 503 rather than 500: senders (CRMs) retry it, and nothing was stored.
    log.error(
        "database unavailable during %s %s: %s",
        request.method,
        request.url.path,
        type(exc).__name__,
    )
    return JSONResponse(
        {"status": "unavailable", "error": "database unavailable, retry later"},
        status_code=503,
        headers={"Retry-After": "30"},
    )


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    # uvicorn has answered every request by now: write what is waiting, then publish
    # what is held (the sweeper would enqueue it anyway, a grace period later).
    app.state.inbox_writer.close()
    app.state.publisher.close()


def create_app(runtime: Runtime) -> FastAPI:
    app = FastAPI(title="Thankly", version="0.1.0", lifespan=_lifespan)
    app.state.runtime = runtime
    # Per process: webhooks are stored by group commit and published in coalesced batches.
    app.state.publisher = Publisher(lambda: runtime.dispatcher)
    app.state.inbox_writer = GroupCommit(lambda: runtime.engine, app.state.publisher.publish)
    # Every registered source checks its configuration now (the generic one: a webhook
    # secret), so a misconfigured API fails at start rather than on the first webhook.
    for name in sources.registered():
        source = runtime.source(name)
        if source is not None:
            source.prepare()
    app.add_exception_handler(OperationalError, _database_unavailable)
    app.state.secret_key = secret_key(runtime.settings)
    app.include_router(webhooks.router)
    app.include_router(tracking.router)
    app.include_router(admin.router)
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.include_router(home.router)
    ui_routes.install(app)
    return app
