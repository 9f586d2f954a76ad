"""`thankly event send` (post a signed event, as a CRM would) and `thankly events …`
(what arrived and what each rule decided)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import httpx
import typer

from worker.cli_common import fail, out
from worker.cli_common import settings_or_exit as _settings

event_app = typer.Typer(help="Send events to a running Thankly.", no_args_is_help=True)
events_app = typer.Typer(help="What arrived, and what each rule decided.", no_args_is_help=True)


def _event_body(file: Path | None, event_type: str | None, email: str | None) -> bytes:
    if file is not None:
        if event_type or email:
            fail("give either FILE or --type/--email, not both", 2)
        try:
            body = file.read_bytes()
        except OSError as exc:
            fail(f"cannot read {file}: {exc.strerror}", 2)
        try:
            json.loads(body)
        except ValueError as exc:
            fail(f"{file} is not valid JSON: {exc}", 2)
        return body
    if not (event_type and email):
        fail("give an event FILE, or both --type and --email", 2)
    document = {
        "type": event_type,
        "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "data": {"contact": {"email": email}},
    }
    return json.dumps(document).encode()


@event_app.command("send")
def event_send(
    file: Annotated[Path | None, typer.Argument(help="Event JSON file (generic format).")] = None,
    event_type: Annotated[str | None, typer.Option("--type", help="Event type.")] = None,
    email: Annotated[str | None, typer.Option("--email", help="Contact email.")] = None,
    url: Annotated[
        str | None, typer.Option("--url", help="Webhook URL [default: PUBLIC_URL/webhooks/generic]")
    ] = None,
    event_id: Annotated[
        str | None, typer.Option("--id", help="webhook-id; reuse one to test redelivery.")
    ] = None,
) -> None:
    """Sign an event with the webhook secret and post it, as a CRM would."""
    from worker.secrets_store import MissingSecretError, webhook_secrets
    from worker.signatures import signed_headers

    settings = _settings()
    body = _event_body(file, event_type, email)
    try:
        secret = webhook_secrets(settings)[0]
    except MissingSecretError as exc:
        fail(str(exc), 2)
    msg_id = event_id or f"evt_{uuid.uuid4().hex}"
    headers = signed_headers(secret, msg_id, int(datetime.now(UTC).timestamp()), body)
    headers["content-type"] = "application/json"
    target = url or f"{settings.public_url}/webhooks/generic"
    try:
        response = httpx.post(target, content=body, headers=headers, timeout=15)
    except httpx.HTTPError as exc:
        fail(f"cannot reach {target}: {exc} (is `thankly run` running?)")
    try:
        answer = response.json()
    except ValueError:
        answer = {"body": response.text[:500]}
    if response.status_code >= 300:
        detail = answer.get("error", answer)
        problems = answer.get("problems") or []
        lines = "".join(f"\n  {p['field']}: {p['message']}" for p in problems)
        fail(f"{response.status_code} from {target}: {detail}{lines}")
    out.print(f"{response.status_code} {answer.get('status')} {msg_id}", highlight=False)


@events_app.command("schema")
def events_schema() -> None:
    """Print the JSON Schema of the generic event (`make schema` writes docs/event.schema.json)."""
    from worker.event_schema import schema_text

    # Plain stdout, not the Rich console: the output is a file's content, byte for byte.
    typer.echo(schema_text(), nl=False)
