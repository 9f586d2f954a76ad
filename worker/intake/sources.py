"""Where webhooks come from: one `Source` per sender, found by name in a registry.

`POST /webhooks/{source}` looks the name up here. A source knows three things about its
sender, and intake knows nothing else about it:

- how a request is authenticated (the generic source: Standard Webhooks signatures; a CRM
  may use basic auth or a token in the body) and which content type it posts;
- how one request splits into events, each with its own id (HubSpot posts JSON arrays,
  Bitrix24 and amoCRM post form bodies): one inbox row per event, the batch stored whole
  or not at all;
- how a stored raw event becomes the canonical event (`worker.events.GenericEvent`),
  possibly after asking its CRM's API for what the webhook left out. That happens at ingest,
  outside any transaction; a `worker.retry.CallError` says whether to try again.

A CRM's source lives next to its outbound adapter, `worker/crm/<name>/source.py` (an
integration's inbound and outbound code in one folder), and registers itself with
`register("<name>", factory)`. The built-in `generic` source is `worker/intake/generic.py`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from worker.events import GenericEvent
from worker.settings import Settings

# Stored in inbox.source (32 characters) and part of the URL.
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")


@dataclass(frozen=True)
class RawEvent:
    """One event as the sender sent it: its id at that sender, and the text to keep."""

    event_id: str
    body: str


@dataclass
class Refused(Exception):
    """A request a source will not take: the HTTP status and the reason the sender sees."""

    status: int
    error: str
    extra: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.status} {self.error}"


class SourceNotReady(RuntimeError):
    """A source cannot take webhooks as configured (`prepare`); the message says what to set."""


class Source(Protocol):
    name: str

    def prepare(self) -> None:
        """Check, when the API starts, that this source can take webhooks (a secret is
        configured); raise with a message an operator can act on."""
        ...

    def media_type_problem(self, content_type: str | None) -> str | None:
        """Why a request with this Content-Type is refused (415), or None."""
        ...

    def receive(
        self, headers: Mapping[str, str], body: bytes, now: datetime, target: str = ""
    ) -> list[RawEvent]:
        """Authenticate the raw bytes and split them into events; raise Refused. Every
        event of the batch must be valid, or the whole request is refused. `target` is the
        request's path and query as received (`/webhooks/hubspot?app=1`), for senders that
        sign the URL."""
        ...

    def translate(self, raw: str) -> GenericEvent:
        """The canonical event for a stored raw event. Raises InvalidEvent or ValueError
        (the row can never become an event), or CallError (an API call failed; it says
        whether trying again can help)."""
        ...


SourceFactory = Callable[[Settings], Source]


class NotConnected:
    """A CRM's URL while that CRM is not set up: a 404 naming what to set, nothing stored.
    Rows stored while it was connected wait (a passing error) until it is again."""

    def __init__(self, name: str, label: str, needs: str) -> None:
        self.name, self._label, self._needs = name, label, needs

    def prepare(self) -> None:
        pass

    def media_type_problem(self, content_type: str | None) -> str | None:
        return None

    def receive(
        self, headers: Mapping[str, str], body: bytes, now: datetime, target: str = ""
    ) -> list[RawEvent]:
        raise Refused(404, f"{self._label} is not connected: set {self._needs}")

    def translate(self, raw: str) -> GenericEvent:
        from worker.retry import CallError

        raise CallError(f"{self._label} is not connected", permanent=False, retry_after=300)


def _generic(settings: Settings) -> Source:
    from worker.intake.generic import GenericSource  # the built-in source, loaded on use

    return GenericSource(settings)


def _hubspot(settings: Settings) -> Source:
    from worker.crm.hubspot.source import build

    return build(settings)


def _pipedrive(settings: Settings) -> Source:
    from worker.crm.pipedrive.source import build

    return build(settings)


def _bitrix24(settings: Settings) -> Source:
    from worker.crm.bitrix24.source import build

    return build(settings)


def _amocrm(settings: Settings) -> Source:
    from worker.crm.amocrm.source import build

    return build(settings)


_FACTORIES: dict[str, SourceFactory] = {
    "generic": _generic,
    "hubspot": _hubspot,
    "pipedrive": _pipedrive,
    "bitrix24": _bitrix24,
    "amocrm": _amocrm,
}


def register(name: str, factory: SourceFactory) -> None:
    """Make `POST /webhooks/<name>` and the ingest of its rows use `factory`'s source."""
    if not _NAME.fullmatch(name):
        raise ValueError(f"source name {name!r}: lower-case letters, digits, - and _, at most 32")
    if name in _FACTORIES:
        raise ValueError(f"a source named {name!r} is registered already")
    _FACTORIES[name] = factory


def unregister(name: str) -> None:
    _FACTORIES.pop(name, None)


def registered() -> list[str]:
    return sorted(_FACTORIES)


def build(name: str, settings: Settings) -> Source | None:
    """The source registered under `name`, or None when there is none."""
    factory = _FACTORIES.get(name)
    return factory(settings) if factory is not None else None
