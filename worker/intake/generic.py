"""The generic source: one event per request, JSON, signed per Standard Webhooks.

Any CRM or automation tool can post this (README, "Connecting a CRM"); the event id is the
`webhook-id` header and the stored raw event is the body exactly as signed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from functools import cached_property
from typing import Any

from worker.events import GenericEvent, InvalidEvent, parse_event_json, validate_event
from worker.intake.signatures import SignatureError, WebhookVerifier
from worker.intake.sources import RawEvent, Refused
from worker.secrets_store import webhook_secrets
from worker.settings import Settings


def is_json(content_type: str | None) -> bool:
    if not content_type:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_json(body: bytes) -> Any:
    """Strict JSON from raw bytes (no NaN/Infinity); raise Refused(400) saying what is wrong."""
    try:
        return json.loads(body.decode("utf-8"), parse_constant=_no_constants)
    except UnicodeDecodeError:
        raise Refused(400, "body is not UTF-8") from None
    except RecursionError:
        raise Refused(400, "JSON is nested too deeply") from None
    except ValueError as exc:
        raise Refused(400, f"malformed JSON: {exc}") from None


class GenericSource:
    name = "generic"

    def __init__(self, settings: Settings | None = None) -> None:
        # Only receiving needs settings (the secrets); translating a stored event does not.
        self._settings = settings

    @cached_property
    def _verifier(self) -> WebhookVerifier:
        # Read on first use: a worker that only ingests never needs the webhook secrets.
        if self._settings is None:
            raise RuntimeError("the generic source receives webhooks only with settings")
        return WebhookVerifier(
            webhook_secrets(self._settings), self._settings.webhook_tolerance_seconds
        )

    def prepare(self) -> None:
        self._verifier  # noqa: B018 - raises MissingSecretError when no secret is set

    def media_type_problem(self, content_type: str | None) -> str | None:
        return None if is_json(content_type) else "Content-Type must be application/json"

    def receive(
        self, headers: Mapping[str, str], body: bytes, now: datetime, target: str = ""
    ) -> list[RawEvent]:
        try:
            event_id = self._verifier.verify(headers, body, now)
        except SignatureError as exc:
            raise Refused(401, str(exc)) from None
        document = parse_json(body)
        try:
            validate_event(document)
        except InvalidEvent as exc:
            raise Refused(422, "not a valid event", {"problems": exc.problems}) from None
        return [RawEvent(event_id, body.decode("utf-8"))]

    def translate(self, raw: str) -> GenericEvent:
        return parse_event_json(raw)
