"""`thankly api --workers N` as an operator runs it: N processes serve one port, a killed
one is replaced, and SIGTERM stops them all."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.cli.test_cli_run import thankly_env, wait_ready
from tests.conftest import SECRET, free_port
from tests.helpers import THANKLY, event_doc, run_thankly, signed
from worker.clock import SystemClock


def children(pid: int) -> set[int]:
    """The live child processes of `pid`, from /proc (Linux)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(entry.name))
    return found


def wait_for(condition: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    pytest.fail("timed out")


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux)")
def test_two_api_processes_serve_one_port_and_a_dead_one_is_replaced(
    tmp_path: Path, redis_url: str
) -> None:
    env = thankly_env(tmp_path / "var") | {
        "THANKLY_DATABASE_URL": f"sqlite:///{tmp_path / 'thankly.db'}",
        "THANKLY_BROKER_URL": redis_url,
        "THANKLY_SECRET_KEY": "k" * 40,
        "THANKLY_MAIL_FROM": "Shop <thanks@shop.example>",
        "THANKLY_WEBHOOK_SECRETS": SECRET,
    }
    assert run_thankly("db", "upgrade", env=env, timeout=60).returncode == 0
    port = free_port()
    proc = subprocess.Popen(
        [*THANKLY, "api", "--port", str(port), "--workers", "2"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, proc)
        wait_for(lambda: len(children(proc.pid)) == 2)
        first = children(proc.pid)
        body, headers = signed(event_doc(), SECRET, SystemClock().now(), "evt_workers")
        assert (
            httpx.post(f"{url}/webhooks/generic", content=body, headers=headers).status_code == 202
        )

        victim = min(first)
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: len(children(proc.pid)) == 2 and victim not in children(proc.pid))
        assert children(proc.pid) - first  # a new process took its place
        wait_ready(url, proc)
        again = httpx.post(f"{url}/webhooks/generic", content=body, headers=headers)
        assert again.json()["status"] == "duplicate"  # the same database, whichever answers

        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=30)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, output
    assert "serving with 2 API processes" in output
    assert "starting another" in output
    assert children(proc.pid) == set()
