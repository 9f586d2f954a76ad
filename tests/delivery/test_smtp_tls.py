"""STARTTLS (smtp://…?starttls=true) and implicit TLS (smtps://), with real certificates."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.smtp_server import server_tls_context, smtp_server
from worker.delivery.senders import SendError
from worker.delivery.smtp import SmtpConfig, SmtpSender
from worker.letters.message import build_message
from worker.letters.render import Rendered


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def message() -> object:
    return build_message(
        rendered=Rendered("Hi", "Hello\n", "<p>Hello</p>"),
        mail_from="T <t@shop.example>",
        to="a@example.org",
        message_id="<tls1@shop.example>",
        date=datetime(2026, 11, 23, tzinfo=UTC),
    )


def send(url: str) -> None:
    sender = SmtpSender(SmtpConfig.from_url(url, timeout=5))
    try:
        sender.send(message(), "t@shop.example", "a@example.org")  # type: ignore[arg-type]
    finally:
        sender.close()


def test_starttls_with_auth(
    certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))  # trust our test CA
    context = server_tls_context(*certificate)
    with smtp_server(auth=("mailer", "pw"), starttls=context) as (script, port):
        send(f"smtp://mailer:pw@localhost:{port}?starttls=true")
    assert script.delivered == ["<tls1@shop.example>"] and script.over_tls == [True]


def test_implicit_tls(certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
    with smtp_server(implicit_tls=server_tls_context(*certificate)) as (script, port):
        send(f"smtps://localhost:{port}")
    assert script.over_tls == [True]


def test_an_untrusted_certificate_is_refused(certificate: tuple[Path, Path]) -> None:
    """Certificates are verified: a relay we cannot authenticate gets no letter."""
    context = server_tls_context(*certificate)
    with smtp_server(starttls=context) as (script, port), pytest.raises(SendError) as info:
        send(f"smtp://localhost:{port}?starttls=true")
    assert info.value.kind == "transient" and "CERTIFICATE_VERIFY_FAILED" in info.value.text
    assert script.delivered == []


def test_a_server_that_requires_starttls_refuses_plain_mail() -> None:
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)  # never used: the client skips STARTTLS
    with smtp_server(starttls=context) as (script, port), pytest.raises(SendError) as info:
        send(f"smtp://localhost:{port}")
    assert info.value.code == 530 and script.delivered == []


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("smtp://mail.example", ("mail.example", 25, None, None, False, False)),
        (
            "smtp://u%40x:p%3Aw@mail.example:587?starttls=true",
            ("mail.example", 587, "u@x", "p:w", False, True),
        ),
        ("smtps://u:p@mail.example", ("mail.example", 465, "u", "p", True, False)),
    ],
)
def test_smtp_urls(url: str, expected: tuple[object, ...]) -> None:
    cfg = SmtpConfig.from_url(url)
    assert (
        cfg.host,
        cfg.port,
        cfg.username,
        cfg.password,
        cfg.implicit_tls,
        cfg.starttls,
    ) == expected


@pytest.mark.parametrize("url", ["http://mail.example", "smtp://", "mail.example:25"])
def test_bad_smtp_urls(url: str) -> None:
    with pytest.raises(ValueError, match="smtp://host"):
        SmtpConfig.from_url(url)
