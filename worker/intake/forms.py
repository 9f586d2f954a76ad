"""Form-encoded webhook bodies (Bitrix24, amoCRM): `a[b][0][c]=v` pairs, UTF-8 and
percent-encoded. Keys stay flat (`data[FIELDS][ID]`): a source reads the few it needs."""

from __future__ import annotations

from urllib.parse import parse_qsl

from worker.intake.sources import Refused

FORM = "application/x-www-form-urlencoded"


def is_form(content_type: str | None) -> bool:
    return (content_type or "").split(";", 1)[0].strip().lower() == FORM


def form_problem(content_type: str | None) -> str | None:
    return None if is_form(content_type) else f"Content-Type must be {FORM}"


def parse_form(body: bytes) -> dict[str, str]:
    """Each key's first value; a body that is not UTF-8 form data is refused (400)."""
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise Refused(400, "not UTF-8 form data") from None
    fields: dict[str, str] = {}
    for key, value in pairs:
        if "\x00" in key or "\x00" in value:
            raise Refused(400, "a NUL in the form data")
        fields.setdefault(key, value)
    return fields
