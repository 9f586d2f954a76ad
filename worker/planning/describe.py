"""Rules in plain words, one line each, the same in `thankly rules check` and on the
dashboard's Rules page."""

from __future__ import annotations

from worker.planning.durations import format_duration
from worker.planning.rules_model import FrequencyCap, Rule, SendWindow


def _bound(value: object) -> str:
    """`100`, or per currency `EUR 100 / PLN 400`."""
    if isinstance(value, dict):
        return " / ".join(f"{code} {amount}" for code, amount in value.items())
    return str(value)


def describe(rule: Rule) -> str:
    parts = [f"{rule.name}: {rule.on} → {rule.letter}", f"after {rule.delay}"]
    for path, condition in rule.when.items():
        ops = condition.model_dump(by_alias=True, exclude_unset=True)
        parts.append(
            "when " + ", ".join(f"{path} {op} {_bound(value)}" for op, value in ops.items())
        )
    if rule.cancel_on:
        parts.append(f"cancelled by {', '.join(rule.cancel_on)}")
    if rule.cap_exempt:
        parts.append("exempt from the frequency cap")
    if rule.follow_up is not None:
        parts.append(f"follow-up within {format_duration(rule.follow_up)}")
    if rule.next_step is not None:
        parts.append(f"next step {rule.next_step.pick('en')[0]}")
    if rule.experiment is not None:
        parts.append(f"experiment {rule.experiment.name} ({', '.join(rule.experiment.arms)})")
    return "; ".join(parts)


def send_window_text(window: SendWindow | None, dash: str = "-", comma: str = ",") -> str:
    """`mon,tue 09:00-18:00` (the CLI), or `mon, tue 09:00 to 18:00` (the dashboard)."""
    if window is None:
        return "any time"
    return f"{comma.join(window.days)} {window.start:%H:%M}{dash}{window.end:%H:%M}"


def cap_text(cap: FrequencyCap | None) -> str:
    return f"{cap.max} per {format_duration(cap.per)}" if cap else "none"
