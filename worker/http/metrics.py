"""`GET /metrics` for Prometheus (names and meaning: worker/metrics.py, README "Metrics").

Open by default: the figures are counts labelled by source, status and outcome, never an
address. With THANKLY_METRICS_TOKEN set, a scrape must send it as a bearer token
(compared in constant time); without it the answer is 401.
"""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from worker.metrics import CONTENT_TYPE, render
from worker.runtime import Runtime

router = APIRouter()


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    token = runtime.settings.metrics_token
    if token is not None:
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), token.get_secret_value().encode()):
            return Response(
                "a bearer token (THANKLY_METRICS_TOKEN) is required\n",
                401,
                {"WWW-Authenticate": "Bearer"},
                media_type="text/plain",
            )
    body = await run_in_threadpool(render, runtime.session_factory, runtime.clock)
    return Response(body, media_type=CONTENT_TYPE)
