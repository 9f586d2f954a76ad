"""Runtimes whose rules run an experiment, and deal events to feed them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import NOW, make_settings
from worker.clock import FixedClock
from worker.delivery.senders import MemorySender
from worker.queue import RecordingDispatcher
from worker.runtime import Runtime, build_runtime

EXPERIMENT = """\
      name: deal-thanks-q1
      variants: {a: deal_closed, b: {letter: deal_closed, variant: short}}
      holdout: 10%
"""

RULES = """\
defaults:
  timezone: UTC
  %(defaults)s
rules:
  - name: deal-closed-thanks
    on: deal.closed
    letter: deal_closed
    delay: %(delay)s
    cancel_on: [deal.reopened, deal.lost]
    experiment:
%(experiment)s
  - {name: referral-thanks, on: referral.made, letter: referral_made, delay: 24h}
"""

MakeRuntime = Callable[..., Runtime]


def rules_text(experiment: str = EXPERIMENT, defaults: str = "", delay: str = "24h") -> str:
    return RULES % {"experiment": experiment.rstrip("\n"), "defaults": defaults, "delay": delay}


@pytest.fixture
def sender() -> MemorySender:
    return MemorySender()


@pytest.fixture
def make_runtime(
    tmp_path: Path, db_url: str, clock: FixedClock, sender: MemorySender
) -> Iterator[MakeRuntime]:
    """make_runtime(experiment=…, defaults=…, **settings): a runtime on the test's database
    with those rules (the file stays: rewrite it with `rewrite_rules`)."""
    built: list[Runtime] = []

    def make(experiment: str = EXPERIMENT, defaults: str = "", **overrides: Any) -> Runtime:
        rules = tmp_path / "rules.yaml"
        rules.write_text(rules_text(experiment, defaults))
        runtime = build_runtime(
            make_settings(tmp_path, db_url, rules_file=rules, **overrides),
            clock=clock,
            dispatcher=RecordingDispatcher(),
            sender=sender,
            sleep=lambda _: None,
        )
        built.append(runtime)
        return runtime

    yield make
    for runtime in built:
        runtime.engine.dispose()


def rewrite_rules(
    runtime: Runtime, experiment: str, defaults: str = "", delay: str = "24h"
) -> None:
    """Save an edit of the rules file, as ops staff would (picked up without restart)."""
    path = runtime.settings.rules_file
    before = path.stat().st_mtime_ns
    path.write_text(rules_text(experiment, defaults, delay))
    # Size and mtime are how a change is noticed: make sure this edit shows in one.
    import os

    os.utime(path, ns=(before + 1_000_000_000, before + 1_000_000_000))


def deal(
    email: str,
    deal_id: str,
    at: datetime = NOW,
    event_type: str = "deal.closed",
    **contact: Any,
) -> dict[str, Any]:
    return {
        "type": event_type,
        "timestamp": at.isoformat().replace("+00:00", "Z"),
        "data": {
            "contact": {"email": email, "first_name": "Anna", **contact},
            "deal": {"id": deal_id, "title": "Annual plan", "amount": "5000", "currency": "EUR"},
        },
    }


def later(days: float) -> datetime:
    return NOW + timedelta(days=days)
