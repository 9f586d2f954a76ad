"""`thankly api --workers N` as an operator runs it: N processes serve one port, a killed
one is replaced, and SIGTERM stops them all."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.cli.test_cli_run import thankly_env
from tests.conftest import SECRET, free_port
from tests.helpers import THANKLY, event_doc, signed, thankly_in_process
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


def wait_for(condition: Callable[[], bool], timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


def ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def stop_all(proc: subprocess.Popen[str]) -> str:
    """Kill the whole process group (supervisor and children) and return what it printed;
    never waits on a pipe an orphan still holds."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    try:
        return proc.communicate(timeout=30)[0]
    except subprocess.TimeoutExpired:
        return "(no output: the pipe stayed open)"


def expect(proc: subprocess.Popen[str], condition: Callable[[], bool], what: str) -> None:
    if not wait_for(condition):
        pytest.fail(f"{what} did not happen; the API printed:\n{stop_all(proc)}")


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux)")
def test_api_processes_do_not_outlive_a_killed_supervisor(tmp_path: Path, redis_url: str) -> None:
    """SIGKILL gives the supervisor no chance to pass anything on: the children must
    notice on their own (PR_SET_PDEATHSIG) rather than serve unsupervised."""
    env = api_env(tmp_path, redis_url)
    port = free_port()
    proc = subprocess.Popen(
        [*THANKLY, "api", "--port", str(port), "--workers", "2"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        expect(proc, lambda: ready(url) and len(children(proc.pid)) == 2, "two ready processes")
        orphans = children(proc.pid)
        proc.kill()
        proc.wait(timeout=10)
        gone = wait_for(lambda: not any(Path(f"/proc/{pid}").exists() for pid in orphans))
    finally:
        output = stop_all(proc)
    assert gone, output


def api_env(tmp_path: Path, redis_url: str) -> dict[str, str]:
    env = thankly_env(tmp_path / "var") | {
        "THANKLY_DATABASE_URL": f"sqlite:///{tmp_path / 'thankly.db'}",
        "THANKLY_BROKER_URL": redis_url,
        "THANKLY_SECRET_KEY": "k" * 40,
        "THANKLY_MAIL_FROM": "Shop <thanks@shop.example>",
        "THANKLY_WEBHOOK_SECRETS": SECRET,
    }
    assert thankly_in_process("db", "upgrade", env=env).returncode == 0  # set-up only
    return env


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux)")
def test_two_api_processes_serve_one_port_and_a_dead_one_is_replaced(
    tmp_path: Path, redis_url: str
) -> None:
    env = api_env(tmp_path, redis_url)
    port = free_port()
    proc = subprocess.Popen(
        [*THANKLY, "api", "--port", str(port), "--workers", "2"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,  # its own process group: cleaned up whole, whatever happens
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        expect(proc, lambda: ready(url) and len(children(proc.pid)) == 2, "two ready processes")
        first = children(proc.pid)
        body, headers = signed(event_doc(), SECRET, SystemClock().now(), "evt_workers")
        assert (
            httpx.post(f"{url}/webhooks/generic", content=body, headers=headers).status_code == 202
        )

        victim = min(first)
        os.kill(victim, signal.SIGKILL)

        def replaced() -> bool:
            now = children(proc.pid)  # one reading: the set changes between two
            return len(now) == 2 and victim not in now

        expect(proc, replaced, "a replacement")
        assert children(proc.pid) - first  # a new process took its place
        expect(proc, lambda: ready(url), "readiness after the replacement")
        again = httpx.post(f"{url}/webhooks/generic", content=body, headers=headers)
        assert again.json()["status"] == "duplicate"  # the same database, whichever answers

        proc.send_signal(signal.SIGTERM)
        stopped = wait_for(lambda: proc.poll() is not None)
    finally:
        output = stop_all(proc)
    assert stopped and proc.returncode == 0, output
    assert "serving with 2 API processes" in output
    assert "starting another" in output
    assert children(proc.pid) == set()
