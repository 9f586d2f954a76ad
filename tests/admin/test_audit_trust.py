"""The audit log names who really acted: the process's account, not what the environment
claims."""

from __future__ import annotations

import json
import os
import pwd
from collections.abc import Iterator
from ipaddress import ip_network
from pathlib import Path
from typing import Any

import pytest
from fastapi import Request
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import select, update

from tests.conftest import RULES_FILE, TEMPLATES, make_settings
from tests.helpers import in_monday_opening, ingest_doc
from tests.http.test_admin_api import FEEDBACK, TOKEN, failed_letter
from worker.cli.common import cli_actor
from worker.clock import FixedClock
from worker.http.app import create_app
from worker.http.client_address import client_address
from worker.models import AuditEntry, Letter, Open
from worker.queue import RecordingDispatcher
from worker.runtime import Runtime, build_runtime
from worker.settings import Settings, SettingsError, load_settings
from worker.tracking.hits import open_token


def test_cli_actor_ignores_a_spoofed_logname(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOGNAME", "ceo")
    monkeypatch.setenv("USER", "ceo")
    assert cli_actor() == f"{pwd.getpwuid(os.getuid()).pw_name} (cli)"


# --- who sent a request: X-Forwarded-For only from THANKLY_TRUSTED_PROXIES ---------------

PROXY = ("10.0.0.2", 40000)
SPOOF = {"x-forwarded-for": "6.6.6.6"}


def _request(peer: str, forwarded: list[str]) -> Request:
    headers = [(b"x-forwarded-for", value.encode()) for value in forwarded]
    return Request({"type": "http", "client": (peer, 1234), "headers": headers})


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("203.0.113.9", ["6.6.6.6"], "203.0.113.9"),  # not a proxy: its header proves nothing
        ("10.0.0.2", [], "10.0.0.2"),
        ("10.0.0.2", ["198.51.100.7"], "198.51.100.7"),
        # The client wrote 6.6.6.6 itself; the proxies appended what they saw.
        ("10.0.0.2", ["6.6.6.6, 198.51.100.7, 10.0.0.5"], "198.51.100.7"),
        ("10.0.0.2", ["6.6.6.6", "198.51.100.7"], "198.51.100.7"),
        ("10.0.0.2", ["6.6.6.6, not-an-ip"], "10.0.0.2"),
        ("10.0.0.2", ["10.0.0.9"], "10.0.0.9"),  # only proxies: the first one seen
    ],
)
def test_forwarded_for_is_read_only_past_trusted_proxies(
    peer: str, forwarded: list[str], expected: str
) -> None:
    proxies = [ip_network("10.0.0.0/8")]
    assert client_address(_request(peer, forwarded), proxies) == expected


def test_no_proxy_is_trusted_by_default() -> None:
    settings = Settings(_env_file=None)
    assert settings.trusted_proxy_networks == []
    assert client_address(_request("127.0.0.1", ["6.6.6.6"]), []) == "127.0.0.1"


def test_a_trusted_proxies_typo_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THANKLY_TRUSTED_PROXIES", "10.0.0.0/8, 10.0.0.300")
    with pytest.raises(SettingsError, match=r"THANKLY_TRUSTED_PROXIES: '10.0.0.300'"):
        load_settings()


def _admin_app(tmp_path: Path, db_url: str, clock: FixedClock, proxies: str) -> Iterator[Any]:
    runtime = build_runtime(
        make_settings(tmp_path, db_url, admin_token=SecretStr(TOKEN), trusted_proxies=proxies),
        clock=clock,
        dispatcher=RecordingDispatcher(),
    )
    with TestClient(create_app(runtime), client=PROXY) as client:
        client.headers["authorization"] = f"Bearer {TOKEN}"
        yield runtime, client
    runtime.engine.dispose()


def _audited_actor(runtime: Runtime, client: TestClient) -> str:
    [letter] = ingest_doc(runtime, FEEDBACK, "evt_audit")
    letter_id = letter.id
    response = client.post("/admin/letters/cancel", json={"ids": [letter_id]}, headers=SPOOF)
    assert response.status_code == 200
    with runtime.session_factory() as session:
        return session.scalars(select(AuditEntry.actor)).one()


def test_the_admin_api_ignores_forwarded_for_from_an_untrusted_peer(
    tmp_path: Path, db_url: str, clock: FixedClock
) -> None:
    for runtime, client in _admin_app(tmp_path, db_url, clock, ""):
        assert _audited_actor(runtime, client) == "admin-api (10.0.0.2)"


def test_the_admin_api_believes_a_trusted_proxy(
    tmp_path: Path, db_url: str, clock: FixedClock
) -> None:
    for runtime, client in _admin_app(tmp_path, db_url, clock, "10.0.0.0/24"):
        assert _audited_actor(runtime, client) == "admin-api (6.6.6.6)"


def test_a_pixel_hit_records_the_peer_unless_a_proxy_is_trusted(
    tmp_path: Path, db_url: str, clock: FixedClock
) -> None:
    for proxies, recorded in (("", "10.0.0.2"), ("10.0.0.2", "6.6.6.6")):
        for runtime, client in _admin_app(tmp_path / proxies, db_url, clock, proxies):
            letter_id = failed_letter(runtime, len(proxies))
            with runtime.session_factory.begin() as session:
                session.execute(update(Letter).values(status="sent", sent_at=clock.now()))
            token = open_token("test-secret-key", letter_id)
            assert client.get(f"/t/o/{token}.gif", headers=SPOOF).status_code == 200
            with runtime.session_factory() as session:
                ips = session.scalars(select(Open.ip).where(Open.letter_id == letter_id)).all()
            assert ips == [recorded]


def test_uvicorn_does_not_rewrite_the_peer_from_forwarded_for(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """uvicorn believes X-Forwarded-For from 127.0.0.1 by default, before Thankly sees the
    request: a local caller could then name any address."""
    import socket

    import uvicorn

    from worker.cli import serve

    seen: list[uvicorn.Config] = []
    monkeypatch.setattr(uvicorn.Server, "run", lambda server, sockets: seen.append(server.config))
    with socket.socket() as sock:
        serve._serve(object(), sock, make_settings(tmp_path, "sqlite://"))
    assert seen and seen[0].proxy_headers is False


# --- letters keep their story: who moved them, and when they were first planned ---------


def _show(cli: Any, letter_id: int) -> tuple[dict[str, Any], str]:
    as_json = cli("letters", "show", str(letter_id), "--json")
    as_text = cli("letters", "show", str(letter_id))
    assert as_json.exit_code == 0 and as_text.exit_code == 0, as_text.output
    return json.loads(as_json.stdout), as_text.stdout


def test_reschedule_is_audited_and_the_planned_time_stays_visible(
    runtime: Runtime, cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES_FILE.read_text())
    monkeypatch.setenv("THANKLY_RULES_FILE", str(rules))
    monkeypatch.setenv("THANKLY_TEMPLATES_DIR", str(TEMPLATES))
    [letter] = ingest_doc(runtime, FEEDBACK, "evt_resched")
    assert in_monday_opening(letter.due_at)
    planned = letter.due_at.isoformat().replace("+00:00", "Z")
    rules.write_text(rules.read_text().replace("delay: 24h}", "delay: 72h}", 1))
    os.utime(rules, ns=(rules.stat().st_mtime_ns + 10**9,) * 2)

    assert cli("rules", "apply", "--reschedule").exit_code == 0

    with runtime.session_factory() as session:
        [entry] = session.scalars(select(AuditEntry).where(AuditEntry.letter_id == letter.id))
    assert (entry.action, entry.actor) == ("reschedule", cli_actor())
    assert entry.details == {
        "old_due_at": letter.due_at.isoformat(),
        "due_at": "2026-11-23T15:30:00+00:00",
    }
    story, text = _show(cli, letter.id)
    assert story["planned_at"] == planned and story["due_at"] == "2026-11-23T15:30:00Z"
    [moved] = [e for e in story["timeline"] if e["what"] == "admin reschedule"]
    assert cli_actor() in moved["detail"] and "15:30" in moved["detail"]
    assert f"planned for {planned}; due 2026-11-23T15:30:00Z" in text
    assert "admin reschedule" in text


def test_send_now_keeps_the_planned_time_visible(runtime: Runtime, cli: Any) -> None:
    [letter] = ingest_doc(runtime, FEEDBACK, "evt_now")
    planned_at = letter.due_at.isoformat().replace("+00:00", "Z")
    assert cli("letters", "send-now", str(letter.id), "--ignore-window").exit_code == 0
    story, text = _show(cli, letter.id)
    assert story["planned_at"] == planned_at
    assert story["due_at"] != story["planned_at"]
    [planned] = [e for e in story["timeline"] if e["what"] == "planned"]
    assert planned["detail"].endswith(f"due {planned_at}")
    assert f"planned for {planned_at}; due" in text
