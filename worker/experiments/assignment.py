"""Which arm of an experiment a contact is in.

A contact's arm is a hash of (experiment, contact address) into BUCKETS buckets: the
holdout takes the first `holdout` share of them, the variants split the rest by weight,
in the order the rules file lists them. So the same contact lands in the same arm on every
event, in every process, after every restart, with nothing stored.

Changing the weights (or the holdout share) moves bucket boundaries, which would move the
contacts near them. To keep earlier contacts where they were, the arm a contact first got
is stored (`experiment_assignments`) and wins over the hash from then on; only contacts
new to the experiment follow the new weights. That holds for the holdout too: contacts held
out stay held out while the experiment runs, even if the share drops to 0% (to send them
letters, close the experiment with `winner:`). A stored variant the rules no longer have
(its letter removed) cannot be kept, and its contacts are assigned afresh.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from worker.db import insert_or_skip
from worker.models import ExperimentAssignment
from worker.planning.rules_model import HOLDOUT, Experiment

BUCKETS = 10_000

# (experiment name, contact address) → the arm stored for it, or None.
StoredArm = Callable[[str, str], str | None]


def bucket(experiment: str, contact: str) -> int:
    """0 … BUCKETS-1, uniform and independent between experiments (the name is hashed in,
    so being in one experiment's holdout says nothing about the next one)."""
    digest = hashlib.sha256(f"{experiment}\x00{contact}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def arm_of_bucket(experiment: Experiment, number: int) -> str:
    held = round(experiment.holdout * BUCKETS)
    if number < held:
        return HOLDOUT
    total = sum(experiment.weight(arm) for arm in experiment.variants)
    # Where `number` falls in the buckets left after the holdout, on the weights' scale.
    position = (number - held) * total / (BUCKETS - held)
    running = 0
    for arm in experiment.variants:
        running += experiment.weight(arm)
        if position < running:
            return arm
    return list(experiment.variants)[-1]  # unreachable: position < total


def choose_arm(experiment: Experiment, contact: str, stored: str | None = None) -> str:
    """The arm a letter to `contact` goes out under now. A closed experiment sends its
    winner; otherwise an arm stored earlier holds while the experiment still has it."""
    if experiment.winner is not None:
        return experiment.winner
    if stored is not None and (stored == HOLDOUT or stored in experiment.variants):
        return stored
    return arm_of_bucket(experiment, bucket(experiment.name, contact))


def stored_arm(session: Session) -> StoredArm:
    """A lookup of stored arms in this session's database."""

    def lookup(experiment: str, contact: str) -> str | None:
        return session.scalar(
            select(ExperimentAssignment.arm).where(
                ExperimentAssignment.experiment == experiment,
                ExperimentAssignment.contact_email == contact,
            )
        )

    return lookup


def remember(
    session: Session, experiment: str, contact: str, arm: str, now: datetime, earlier: str | None
) -> None:
    """Store the contact's arm: a new row when the contact had none (`earlier` is None;
    a concurrent first letter's row wins), else the arm given instead of a stored one the
    experiment no longer has (see the module docstring)."""
    if earlier is None:
        session.execute(
            insert_or_skip(session, ExperimentAssignment).on_conflict_do_nothing(
                index_elements=["experiment", "contact_email"]
            ),
            {"experiment": experiment, "contact_email": contact, "arm": arm, "assigned_at": now},
        )
        return
    session.execute(
        update(ExperimentAssignment)
        .where(
            ExperimentAssignment.experiment == experiment,
            ExperimentAssignment.contact_email == contact,
        )
        .values(arm=arm, assigned_at=now)
    )
