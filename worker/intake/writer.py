"""Group commit for the webhook route: many requests, one INSERT and one COMMIT.

Each request hands its events to the process's writer thread and waits. The thread takes
every request that arrived while it was committing the previous batch (no timer: under
load batches grow by themselves, alone a request is written at once), stores them in one
transaction (`inbox.store_many`), hands the new rows to the publisher and only then
answers each request: a 202 is never sent for a row that is not committed.

A batch that fails is retried one request at a time, so a request the database refuses
fails alone; a database that is unreachable fails the whole batch at once (503s).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from worker.intake.coalescing import Coalescing
from worker.intake.inbox import Accepted, Incoming, store_many
from worker.intake.sources import RawEvent

log = logging.getLogger(__name__)

MAX_BATCH = 256  # requests in one transaction at most
Outcome = list[Accepted] | BaseException


@dataclass(frozen=True)
class _Waiting:
    incoming: Incoming
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[list[Accepted]]


class GroupCommit:
    def __init__(self, engine: Callable[[], Engine], on_commit: Callable[[list[int]], None]):
        self._engine = engine
        self._on_commit = on_commit  # the new inbox ids of a committed batch; must not raise
        self._thread = Coalescing("thankly-inbox", self._handle, MAX_BATCH, on_exit=self._drop)
        # Held between batches by the one thread that writes: no pool checkout and no
        # pre-ping round trip per batch (~0.35 ms of CPU each).
        self._conn: Connection | None = None

    async def store(self, source: str, events: Sequence[RawEvent], now: datetime) -> list[Accepted]:
        """The request's events as stored (new or duplicate), once committed; raises what
        storing raised."""
        loop = asyncio.get_running_loop()
        waiting = _Waiting(Incoming(source, events, now), loop, loop.create_future())
        self._thread.put(waiting)
        # Shielded: a client that hangs up does not cancel the write it started (its row
        # may be committed; a retry is then a duplicate).
        return await asyncio.shield(waiting.future)

    def close(self) -> None:
        """Write and answer what is waiting, then stop; a later store starts again."""
        self._thread.close()
        self._drop()  # held by `write` called outside the thread (tests)

    def _handle(self, batch: list[_Waiting]) -> None:
        try:
            outcomes = self.write([w.incoming for w in batch])
            new = [
                a.inbox_id
                for outcome in outcomes
                if not isinstance(outcome, BaseException)
                for a in outcome
                if not a.duplicate
            ]
            if new:
                # Before the answers: in a test (an in-memory dispatcher) the publish is
                # seen as soon as the response is.
                self._on_commit(new)
        except BaseException as exc:  # never leave a request waiting, nor the thread dead
            log.exception("storing %d webhooks failed", len(batch))
            outcomes = [exc] * len(batch)
        _answer(batch, outcomes)

    def write(self, batch: list[Incoming]) -> list[Outcome]:
        try:
            return list(self._transaction(batch))
        except OperationalError as exc:
            return [exc] * len(batch)  # the database is unreachable: no point trying each
        except Exception as exc:
            if len(batch) == 1:
                return [exc]
            log.warning("a batch of %d webhooks failed (%s); storing each alone", len(batch), exc)
        outcomes: list[Outcome] = []
        for incoming in batch:
            try:
                [stored] = self._transaction([incoming])
                outcomes.append(stored)
            except Exception as exc:
                outcomes.append(exc)
        return outcomes

    def _transaction(self, batch: list[Incoming]) -> list[list[Accepted]]:
        held = self._conn is not None
        if self._conn is None:
            self._conn = self._engine().connect()
        try:
            with self._conn.begin():
                return store_many(self._conn, batch)
        except DBAPIError as exc:
            if not exc.connection_invalidated:
                raise  # the connection is fine: the statement failed (a refused request)
            self._drop()
            if not held:
                raise
        # The held connection had died while idle (a database restart, an idle timeout):
        # once more on a new one. Had it died during COMMIT, the rows may be stored: the
        # retry then answers them as duplicates (a success to the sender), and the
        # sweeper enqueues them after the grace period.
        self._conn = self._engine().connect()
        with self._conn.begin():
            return store_many(self._conn, batch)

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception as exc:  # a dead connection may fail to close; it is gone anyway
                log.debug("closing the inbox writer's connection: %s", exc)


def _answer(batch: list[_Waiting], outcomes: list[Outcome]) -> None:
    """One wake-up per event loop for the whole batch (a call_soon_threadsafe each)."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Waiting, Outcome]]] = {}
    for waiting, outcome in zip(batch, outcomes, strict=True):
        by_loop.setdefault(waiting.loop, []).append((waiting, outcome))
    for loop, answers in by_loop.items():
        try:
            loop.call_soon_threadsafe(_settle, answers)
        except RuntimeError:
            log.warning("%d webhook requests outlived their event loop", len(answers))


def _settle(answers: list[tuple[_Waiting, Outcome]]) -> None:
    for waiting, outcome in answers:
        if waiting.future.done():
            continue
        if isinstance(outcome, BaseException):
            waiting.future.set_exception(outcome)
        else:
            waiting.future.set_result(outcome)
