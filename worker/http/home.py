"""`GET /`: where someone who opens Thankly's address in a browser finds their way on."""

from __future__ import annotations

from html import escape

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from worker.runtime import Runtime

router = APIRouter()

# Inline style only: the page must work behind firewalls and leak no visit to a CDN.
PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Thankly</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:40em;margin:2em auto;padding:0 1em}}
code{{background:#f3f3f3;padding:0 .2em}}</style></head>
<body>
<h1>Thankly</h1>
<p>CRM events in, well-timed personal thank-you letters out.</p>
<ul>
<li><a href="/healthz">/healthz</a>: the process answers</li>
<li><a href="/readyz">/readyz</a>: the database and the broker answer</li>
<li><a href="/metrics">/metrics</a>: for Prometheus (THANKLY_METRICS_TOKEN guards it)</li>
<li><a href="/docs">/docs</a>: the HTTP API, including the admin API</li>
</ul>
<p>CRMs post signed events to <code>{webhook}</code>.</p>
<h2>Dashboard</h2>
{dashboard}
<h2>Admin API</h2>
{admin}
</body></html>
"""

ADMIN_ON = (
    "<p>On. Send the token from <code>THANKLY_ADMIN_TOKEN</code> as "
    "<code>Authorization: Bearer &lt;token&gt;</code>, e.g. "
    "<code>curl -H 'Authorization: Bearer …' {letters}</code>.</p>"
)
ADMIN_OFF = (
    "<p>Off: set <code>THANKLY_ADMIN_TOKEN</code> (at least 24 characters) and restart to "
    "turn it on. The <code>thankly letters</code> commands work without it.</p>"
)


DASHBOARD_ON = (
    '<p><a href="/ui/">Open the dashboard</a>: sign in with the admin token '
    "(<code>THANKLY_ADMIN_TOKEN</code>; <code>thankly run</code> prints where it keeps its "
    "own) or a read-only token (<code>THANKLY_READONLY_TOKEN</code>).</p>"
)
DASHBOARD_OFF = "<p>Off, like the admin API: it needs <code>THANKLY_ADMIN_TOKEN</code>.</p>"


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def home(request: Request) -> HTMLResponse:
    runtime: Runtime = request.app.state.runtime
    base = runtime.settings.public_url
    admin = (
        ADMIN_ON.format(letters=escape(f"{base}/admin/letters"))
        if runtime.settings.admin_token is not None
        else ADMIN_OFF
    )
    on = runtime.settings.admin_token is not None
    return HTMLResponse(
        PAGE.format(
            webhook=escape(f"{base}/webhooks/generic"),
            admin=admin,
            dashboard=DASHBOARD_ON if on else DASHBOARD_OFF,
        )
    )
