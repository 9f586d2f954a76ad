"""The FastAPI application, built around one Runtime."""

from __future__ import annotations

from fastapi import FastAPI

from worker.http import health, webhooks
from worker.runtime import Runtime
from worker.secrets_store import webhook_secrets
from worker.signatures import WebhookVerifier


def create_app(runtime: Runtime) -> FastAPI:
    app = FastAPI(title="Thankly", version="0.1.0")
    app.state.runtime = runtime
    app.state.webhook_verifier = WebhookVerifier(
        webhook_secrets(runtime.settings), runtime.settings.webhook_tolerance_seconds
    )
    app.include_router(webhooks.router)
    app.include_router(health.router)
    return app
