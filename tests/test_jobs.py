"""The job table: one wiring from task name to function, for Celery and in-process runs."""

from __future__ import annotations

import pytest

from worker import jobs
from worker.queue import DELIVER_ACTIVITY, INGEST_INBOX, RECONCILE_CRM, SEND_LETTER
from worker.runtime import Runtime


def test_every_task_the_code_enqueues_has_a_job_and_a_celery_task() -> None:
    import tasks.crm
    import tasks.intake
    import tasks.sending  # noqa: F401 - registers the tasks
    from worker.celery_app import app

    enqueued = {INGEST_INBOX, SEND_LETTER, DELIVER_ACTIVITY, RECONCILE_CRM}
    assert set(jobs.JOBS) == enqueued
    assert enqueued <= set(app.tasks)


@pytest.mark.parametrize(
    ("module", "task", "name"),
    [
        ("tasks.intake", "ingest_inbox", INGEST_INBOX),
        ("tasks.sending", "send_letter", SEND_LETTER),
        ("tasks.crm", "deliver_activity", DELIVER_ACTIVITY),
        ("tasks.crm", "reconcile_crm", RECONCILE_CRM),
    ],
)
def test_a_celery_task_runs_its_job_through_the_table(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch, module: str, task: str, name: str
) -> None:
    import importlib

    ran: list[tuple[Runtime, int]] = []

    def job(rt: Runtime, item: int) -> str:
        ran.append((rt, item))
        return f"done {item}"

    monkeypatch.setitem(jobs.JOBS, name, job)
    celery_task = getattr(importlib.import_module(module), task)
    assert celery_task.run(41) == "done 41"
    assert ran == [(runtime, 41)]


def test_run_enqueued_runs_each_job_in_order(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    order: list[str] = []

    def job(label: str) -> jobs.Job:
        def run(_rt: Runtime, item: int) -> str:
            order.append(f"{label}{item}")
            return "ok"

        return run

    monkeypatch.setitem(jobs.JOBS, SEND_LETTER, job("send"))
    monkeypatch.setitem(jobs.JOBS, DELIVER_ACTIVITY, job("crm"))
    done = jobs.run_enqueued(runtime, [(SEND_LETTER, (2,)), (DELIVER_ACTIVITY, (7,))])
    assert order == ["send2", "crm7"]
    assert done == [(SEND_LETTER, 2, "ok"), (DELIVER_ACTIVITY, 7, "ok")]


def test_a_grouped_task_runs_every_id_and_raises_the_first_error_at_the_end(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tasks.intake

    ran: list[int] = []

    def ingest(_rt: Runtime, item: int) -> str:
        ran.append(item)
        if item == 2:
            raise ValueError("a poison row")  # the job parks it, then raises
        return "ingested"

    monkeypatch.setitem(jobs.JOBS, INGEST_INBOX, ingest)
    with pytest.raises(ValueError, match="a poison row"):
        tasks.intake.ingest_inbox.run(1, 2, 3)
    assert ran == [1, 2, 3]  # the rows after the poison one were not left behind
    assert tasks.intake.ingest_inbox.run(4, 5) == "ingested,ingested"
