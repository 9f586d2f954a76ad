"""Message-IDs: one per letter, made when the letter is planned, reused by every attempt."""

from __future__ import annotations

import uuid
from email.utils import parseaddr


def message_id_domain(mail_from: str) -> str:
    address = parseaddr(mail_from)[1]
    _, _, domain = address.rpartition("@")
    return domain or "thankly.invalid"


def new_message_id(domain: str) -> str:
    return f"<{uuid.uuid4().hex}@{domain}>"
