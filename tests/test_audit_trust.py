"""The audit log names who really acted: the process's account, not what the environment
claims."""

from __future__ import annotations

import os
import pwd

import pytest

from worker.cli_common import cli_actor


def test_cli_actor_ignores_a_spoofed_logname(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOGNAME", "ceo")
    monkeypatch.setenv("USER", "ceo")
    assert cli_actor() == f"{pwd.getpwuid(os.getuid()).pw_name} (cli)"
