"""Group commit (worker/intake/writer.py): many webhook requests, one transaction, each
answered only after its rows are committed, a duplicate still a duplicate."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, func, select, text
from sqlalchemy.exc import OperationalError

from worker.db import make_engine
from worker.intake.inbox import Accepted, Incoming, store_many
from worker.intake.sources import RawEvent
from worker.intake.writer import GroupCommit, Outcome
from worker.models import InboxItem

NOW = datetime(2026, 12, 1, tzinfo=UTC)


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


def rows(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(InboxItem)).scalar_one())


def stored(outcome: Outcome) -> list[Accepted]:
    assert isinstance(outcome, list), outcome
    return outcome


def incoming(*event_ids: str, body: str = "{}") -> Incoming:
    return Incoming("generic", [RawEvent(e, body) for e in event_ids], NOW)


def test_requests_stored_together_answer_as_if_stored_one_after_the_other(
    engine: Engine,
) -> None:
    with engine.begin() as conn:
        [[earlier]] = store_many(conn, [incoming("evt_old")])
    with engine.begin() as conn:
        first, second, third = store_many(
            conn,
            [
                incoming("evt_a", "evt_b"),
                incoming("evt_b", "evt_c"),  # evt_b is the first request's
                incoming("evt_old", "evt_c"),  # seen before; evt_c is the second's
            ],
        )
    assert [(a.event_id, a.duplicate) for a in first] == [("evt_a", False), ("evt_b", False)]
    assert [(a.event_id, a.duplicate) for a in second] == [("evt_b", True), ("evt_c", False)]
    assert third == [
        Accepted(earlier.inbox_id, "evt_old", duplicate=True),
        Accepted(second[1].inbox_id, "evt_c", duplicate=True),
    ]
    assert second[0].inbox_id == first[1].inbox_id
    assert rows(engine) == 4


def test_a_request_the_database_refuses_fails_alone(pg_clean_url: str) -> None:
    engine = make_engine(pg_clean_url)
    try:
        writer = GroupCommit(lambda: engine, lambda ids: None)
        # PostgreSQL stores no NUL in text: this request fails the batch's transaction.
        good, bad, also_good = writer.write(
            [incoming("evt_1"), incoming("evt_2", body="\x00"), incoming("evt_3")]
        )
        assert isinstance(bad, Exception)
        assert [a.event_id for a in stored(good)] == ["evt_1"]
        assert [a.event_id for a in stored(also_good)] == ["evt_3"]
        assert rows(engine) == 2
    finally:
        writer.close()
        engine.dispose()


def test_each_request_is_answered_after_its_rows_are_committed_and_handed_on(
    engine: Engine,
) -> None:
    handed: list[int] = []
    committed_when_handed: list[int] = []

    def on_commit(ids: list[int]) -> None:
        # Another connection sees the rows: they are committed before the hand-over.
        committed_when_handed.append(rows(engine))
        handed.extend(ids)

    writer = GroupCommit(lambda: engine, on_commit)

    async def post_all() -> list[list[Accepted]]:
        return await asyncio.gather(
            *(writer.store("generic", [RawEvent(f"evt_{i % 10}", "{}")], NOW) for i in range(20))
        )

    try:
        answers = asyncio.run(post_all())
    finally:
        writer.close()
    new = [a for [a] in answers if not a.duplicate]
    assert len(new) == 10 and sum(a.duplicate for [a] in answers) == 10
    assert sorted(handed) == sorted(a.inbox_id for a in new)  # duplicates are not published
    assert committed_when_handed[-1] == rows(engine) == 10


def test_a_store_after_close_starts_the_writer_again(engine: Engine) -> None:
    writer = GroupCommit(lambda: engine, lambda ids: None)
    for event_id in ("evt_1", "evt_2"):
        [answer] = asyncio.run(writer.store("generic", [RawEvent(event_id, "{}")], NOW))
        assert not answer.duplicate
        writer.close()
    assert rows(engine) == 2


def test_an_unreachable_database_fails_every_request_of_the_batch() -> None:
    down = make_engine("postgresql+psycopg://postgres@127.0.0.1:1/test")
    try:
        writer = GroupCommit(lambda: down, lambda ids: pytest.fail("nothing was committed"))
        outcomes = writer.write([incoming("evt_1"), incoming("evt_2")])
        assert all(isinstance(o, Exception) for o in outcomes)

        async def post() -> list[Accepted]:
            return await writer.store("generic", [RawEvent("evt_3", "{}")], NOW)

        with pytest.raises(OperationalError):
            asyncio.run(post())
    finally:
        writer.close()
        down.dispose()


def test_a_connection_that_died_while_idle_is_replaced_without_failing_a_request(
    pg_clean_url: str,
) -> None:
    engine = make_engine(pg_clean_url)
    writer = GroupCommit(lambda: engine, lambda ids: None)
    try:
        [outcome] = writer.write([incoming("evt_1")])
        assert not stored(outcome)[0].duplicate
        held = writer._conn
        assert held is not None
        backend = held.connection.dbapi_connection.info.backend_pid  # type: ignore[union-attr]
        with engine.begin() as admin:  # as a database restart would
            admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": backend})
        [outcome] = writer.write([incoming("evt_2")])
        assert not stored(outcome)[0].duplicate and rows(engine) == 2
    finally:
        writer.close()
        engine.dispose()


def test_a_naive_time_is_refused_before_it_reaches_the_database() -> None:
    with pytest.raises(ValueError, match="naive"):
        Incoming("generic", [RawEvent("evt_1", "{}")], datetime(2026, 12, 1))
