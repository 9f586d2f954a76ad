"""The last look at a message's bytes before they leave: a defect anywhere upstream (our
code, or the email library of an unpatched interpreter, CVE-2024-6923) must not end the
header block early, add a header, or put SMTP commands into the stream.

Checked on the exact bytes a sender writes, so the answer does not depend on how they
were made: only CRLF line ends; a header block whose fields are exactly the message's own,
none of which decodes (RFC 2047) to a line break; and, after dot-stuffing, no line that
a server could read as the end of the data except the final one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from email.header import decode_header

_FIELD = re.compile(rb"^([!-9;-~]+):")  # RFC 5322 field name: printable ASCII but ':'
_END = b"\r\n.\r\n"


def unsafe_reason(data: bytes, header_names: Iterable[str], *, dot_stuffed: bool) -> str | None:
    """Why `data` must not be sent, or None. `header_names`: the fields the message was
    built with, in order; `dot_stuffed`: the bytes are an SMTP DATA stream, terminator
    included."""
    if dot_stuffed:
        if not data.endswith(_END):
            return "the data does not end with <CRLF>.<CRLF>"
        data = data[: -len(_END) + 2]
    if b"\0" in data:
        return "a NUL byte in the message"
    if b"\r" in data.replace(b"\r\n", b""):
        return "a bare CR (line ends must be CRLF)"
    if b"\n" in data.replace(b"\r\n", b""):
        return "a bare LF (line ends must be CRLF)"
    head, separator, body = data.partition(b"\r\n\r\n")
    if not separator:
        return "no empty line after the header block"
    if dot_stuffed and (head.startswith(b".") or _unstuffed_dot(body)):
        return "a lone or unstuffed '.' line would end the data early"
    return _header_problem(head.split(b"\r\n"), list(header_names))


DOT = b"."


def _unstuffed_dot(body: bytes) -> bool:
    # After stuffing, every line that starts with a dot starts with two of them.
    return any(
        line.startswith(DOT) and not line.startswith(DOT * 2) for line in body.split(b"\r\n")
    )


def _header_problem(lines: list[bytes], expected: list[str]) -> str | None:
    fields: list[tuple[str, bytes]] = []
    for line in lines:
        if line[:1] in (b" ", b"\t") and fields:
            name, value = fields[-1]
            fields[-1] = (name, value + line)  # unfold
            continue
        match = _FIELD.match(line)
        if match is None:
            return f"header line {len(fields) + 1} is not a header field"
        fields.append((match.group(1).decode("ascii"), line[match.end() :]))
    names = [name for name, _ in fields]
    if [n.lower() for n in names] != [n.lower() for n in expected]:
        # Field names from the bytes may be an attacker's words: count them, never show them.
        built = {n.lower() for n in expected}
        missing = [n for n in expected if n.lower() not in {m.lower() for m in names}]
        foreign = sum(1 for n in names if n.lower() not in built)
        return (
            "the header block is not the one built"
            + (f": missing {', '.join(missing)}" if missing else "")
            + (f"; {foreign} unknown field(s)" if foreign else "")
        )
    for name, value in fields:
        if _decodes_to_line_break(value):
            return f"the {name} header decodes to a line break or control character"
    return None


def _decodes_to_line_break(raw: bytes) -> bool:
    """What a reader's RFC 2047 decoder makes of the value holds no control character
    (folding whitespace aside): no header that some client shows as several lines."""
    text = raw.decode("utf-8", "replace").replace("\r\n", "")
    try:
        parts = decode_header(text)
    except (ValueError, LookupError):  # undecodable is not a line break
        return False
    decoded = ""
    for chunk, charset in parts:
        if isinstance(chunk, str):
            decoded += chunk
            continue
        try:
            decoded += chunk.decode(charset or "ascii", "replace")
        except LookupError:
            decoded += chunk.decode("latin-1")
    return any((ord(ch) < 32 and ch != "\t") or ord(ch) == 127 for ch in decoded)


def refuse_unsafe(data: bytes, header_names: Iterable[str], *, dot_stuffed: bool) -> None:
    """Raises a permanent SendError when `data` must not be sent: the same message would be
    refused again, and no byte of it has reached a server."""
    reason = unsafe_reason(data, header_names, dot_stuffed=dot_stuffed)
    if reason is not None:
        # Imported here: the senders import this module to call it.
        from worker.delivery.senders import SendError

        raise SendError("permanent", "wire-check", f"message not sent: {reason}")
