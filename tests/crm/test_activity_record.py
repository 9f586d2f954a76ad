"""worker.crm.activities.record says whether it added the activity, on both databases: a
second record of the same key is a no-op that answers False."""

from __future__ import annotations

from sqlalchemy import func, select

from tests.conftest import NOW
from tests.helpers import event_doc, ingest_doc
from worker.crm.activities import record
from worker.models import CrmActivity, Letter
from worker.runtime import Runtime


def test_record_answers_true_once_per_key(runtime: Runtime) -> None:
    doc = event_doc()
    doc["data"]["deal"] = {"id": "9001", "amount": "500", "currency": "EUR"}
    [letter] = ingest_doc(runtime, doc, "evt_1")
    with runtime.session_factory.begin() as session:
        row = session.get_one(Letter, letter.id)
        assert record(session, row, "email.opened", f"opened:{row.id}", NOW) is True
        assert record(session, row, "email.opened", f"opened:{row.id}", NOW) is False
        assert record(session, row, "email.clicked", f"clicked:{row.id}:a", NOW) is True
    with runtime.session_factory() as session:
        assert session.scalar(select(func.count()).select_from(CrmActivity)) == 2
