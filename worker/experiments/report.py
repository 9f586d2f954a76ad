"""`thankly experiments report` and `GET /admin/experiments/{name}`: per arm what was
planned, sent, opened, clicked, unsubscribed and converted, with intervals, the lift of
each variant over the holdout and over the first variant, and a verdict that waits for the
size the test needs.

The numbers come from the database (outcomes.py); the maths from statistics.py; what the
experiment is (arms, window, the effect it is sized for) from the rules in force. An
experiment no longer in the rules still has a report, with the default window.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from worker.experiments.outcomes import ArmCounts, arm_counts, experiment_names
from worker.experiments.statistics import Interval, compare, sample_size, verdict, wilson
from worker.planning.durations import format_duration
from worker.planning.rules_model import HOLDOUT, Experiment, RuleSet

ALPHA = 0.05
CONFIDENCE = 1 - ALPHA
# For experiments no longer in the rules: what the rules default to.
DEFAULTS = Experiment.model_construct(
    name="-",
    variants={},
    weights=None,
    holdout=0.0,
    window=timedelta(days=90),
    convert_on=["deal.closed"],
    min_effect=0.2,
    winner=None,
    note_held_out=False,
)


class UnknownExperiment(LookupError):
    pass


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment else None


def _interval(value: Interval | None) -> list[float] | None:
    return [round(value.low, 6), round(value.high, 6)] if value else None


def _rate(x: int, n: int) -> dict[str, Any]:
    return {"rate": round(x / n, 6) if n else None, "interval": _interval(wilson(x, n, CONFIDENCE))}


def status(experiment: Experiment | None) -> str:
    if experiment is None:
        return "not in the rules"
    return f"closed: winner {experiment.winner}" if experiment.closed else "running"


def _arm_entry(counts: ArmCounts, experiment: Experiment | None) -> dict[str, Any]:
    chosen = experiment.variants.get(counts.arm) if experiment else None
    return asdict(counts) | {
        "letter": chosen.letter if chosen else None,
        "variant": chosen.variant if chosen else None,
        # Conversions are over every planned letter; opens and clicks over sent ones.
        "conversion": _rate(counts.converted, counts.planned),
        "open": _rate(counts.opened, counts.sent),
        "click": _rate(counts.clicked, counts.sent),
        "unsubscribe": _rate(counts.unsubscribed, counts.sent),
    }


def _comparison(arm: ArmCounts, base: ArmCounts, min_effect: float) -> dict[str, Any]:
    result = compare(arm.converted, arm.planned, base.converted, base.planned, CONFIDENCE)
    base_rate = base.converted / base.planned if base.planned else 0.0
    needed = sample_size(base_rate, min_effect, ALPHA)
    said = verdict(arm.arm, base.arm, arm.planned, base.planned, result, needed, ALPHA)
    entry: dict[str, Any] = {
        "arm": arm.arm,
        "baseline": base.arm,
        "needed_per_arm": needed,
        "still_needed": (
            max(0, needed - arm.planned) + max(0, needed - base.planned) if needed else None
        ),
        "decided": said.decided,
        "verdict": said.text,
    }
    if result is None:
        return entry | {"absolute": None, "relative": None, "p_value": None, "test": None}
    return entry | {
        "absolute": round(result.absolute, 6),
        "absolute_interval": _interval(result.absolute_interval),
        "relative": round(result.relative, 6) if result.relative is not None else None,
        "relative_interval": _interval(result.relative_interval),
        "p_value": result.p_value,
        "test": result.test,
    }


def _comparisons(
    arms: dict[str, ArmCounts], order: list[str], min_effect: float
) -> list[dict[str, Any]]:
    """Each variant against the holdout (do the letters pay?) and each later variant
    against the first (which letter?)."""
    variants = [a for a in order if a != HOLDOUT and a in arms]
    pairs = [(v, HOLDOUT) for v in variants if HOLDOUT in arms]
    pairs += [(v, variants[0]) for v in variants[1:]]
    return [_comparison(arms[a], arms[b], min_effect) for a, b in pairs]


def _overall(experiment: Experiment | None, comparisons: list[dict[str, Any]]) -> str:
    lines = []
    if experiment is not None and experiment.closed:
        lines.append(
            f"Closed: every letter since goes out as {experiment.winner}; "
            "these numbers are the letters planned while it ran."
        )
    if not comparisons:
        lines.append("No letters to compare yet.")
    lines += [c["verdict"] for c in comparisons]
    return " ".join(lines)


def report(
    factory: sessionmaker[Session],
    rules: RuleSet,
    name: str,
    now: datetime,
    since: datetime | None = None,
) -> dict[str, Any]:
    """The report of experiment `name`; UnknownExperiment if neither the rules nor any
    letter name it."""
    running = rules.experiments.get(name)
    experiment = running[1] if running else None
    config = experiment or DEFAULTS
    with factory() as session:
        if experiment is None and name not in experiment_names(session):
            raise UnknownExperiment(name)
        counts = arm_counts(
            session,
            name,
            window=config.window,
            convert_on=list(config.convert_on),
            now=now,
            since=since,
        )
    order = config.arms if experiment else sorted(counts, key=lambda a: (a == HOLDOUT, a))
    order += sorted(a for a in counts if a not in order)  # arms the rules no longer have
    arms = {a: counts.get(a, ArmCounts(a)) for a in order}
    comparisons = _comparisons(arms, order, config.min_effect)
    return {
        "experiment": name,
        "rule": running[0].name if running else None,
        "status": status(experiment),
        "winner": experiment.winner if experiment else None,
        "as_of": _iso(now),
        "since": _iso(since),
        "window": format_duration(config.window),
        "convert_on": list(config.convert_on),
        "min_effect": config.min_effect,
        "holdout": experiment.holdout if experiment else None,
        "confidence": CONFIDENCE,
        "arms": [_arm_entry(arms[a], experiment) for a in order],
        "comparisons": comparisons,
        "verdict": _overall(experiment, comparisons),
    }


def list_experiments(factory: sessionmaker[Session], rules: RuleSet) -> list[dict[str, Any]]:
    """Experiments in the rules and experiments with letters, by name."""
    with factory() as session:
        seen = experiment_names(session)
    running = rules.experiments
    rows = []
    for name in sorted(set(running) | set(seen)):
        letters, first, last = seen.get(name, (0, None, None))
        rule, experiment = running.get(name, (None, None))
        rows.append(
            {
                "experiment": name,
                "rule": rule.name if rule else None,
                "status": status(experiment),
                "arms": experiment.arms if experiment else None,
                "holdout": experiment.holdout if experiment else None,
                "letters": letters,
                "first_planned": _iso(first),
                "last_planned": _iso(last),
            }
        )
    return rows
