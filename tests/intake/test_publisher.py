"""The per-process publisher (worker/intake/publisher.py): accepted rows are enqueued in
coalesced batches, off the request's path, and nothing held is dropped at shutdown."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from worker.intake.publisher import TASK_SIZE, Publisher
from worker.queue import INGEST_INBOX, RecordingDispatcher


class GatedBroker:
    """Takes each batch only once let through; records every batch it took."""

    def __init__(self, failures: int = 0) -> None:
        self.batches: list[list[int]] = []
        self.tasks: list[tuple[int, ...]] = []
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.gate.set()
        self.failures = failures

    def send(self, task: str, *ids: int) -> None:
        raise AssertionError("the publisher sends batches")

    def send_many(self, task: str, groups: Sequence[Sequence[int]]) -> None:
        assert task == INGEST_INBOX
        self.entered.set()
        self.gate.wait()
        if self.failures:
            self.failures -= 1
            raise ConnectionError("redis is down")
        self.batches.append([i for group in groups for i in group])
        self.tasks.extend(tuple(group) for group in groups)


def test_rows_accepted_during_a_publish_go_out_together_in_the_next() -> None:
    broker = GatedBroker()
    broker.gate.clear()
    publisher = Publisher(lambda: broker)
    publisher.publish([1])
    assert broker.entered.wait(10)  # the first publish is on the wire...
    publisher.publish([2])
    publisher.publish([3, 4])  # ...while three more rows are accepted
    broker.gate.set()
    publisher.close()
    assert broker.batches == [[1], [2, 3, 4]]


def test_close_publishes_everything_still_held() -> None:
    broker = GatedBroker()
    publisher = Publisher(lambda: broker)
    for inbox_id in range(1, 51):
        publisher.publish([inbox_id])
    publisher.close()
    assert sorted(i for batch in broker.batches for i in batch) == list(range(1, 51))


def test_a_broker_failure_is_logged_and_later_rows_still_go_out() -> None:
    broker = GatedBroker(failures=1)
    publisher = Publisher(lambda: broker)
    publisher.publish([1])  # lost to the broker: the sweeper enqueues it after the grace
    publisher.close()
    publisher.publish([2])  # a publish after close starts the thread again
    publisher.close()
    assert broker.batches == [[2]]


def test_an_in_memory_dispatcher_is_published_to_at_once() -> None:
    recording = RecordingDispatcher()
    Publisher(lambda: recording).publish([7, 8])
    assert recording.sent == [(INGEST_INBOX, (7,)), (INGEST_INBOX, (8,))]


def test_rows_published_together_go_as_tasks_of_several_rows() -> None:
    broker = GatedBroker()
    broker.gate.clear()
    publisher = Publisher(lambda: broker)
    publisher.publish([0])
    assert broker.entered.wait(10)
    rows = list(range(1, 2 * TASK_SIZE + 6))
    publisher.publish(rows)  # held while the first publish is on the wire
    broker.gate.set()
    publisher.close()
    assert broker.tasks == [
        (0,),
        tuple(rows[:TASK_SIZE]),
        tuple(rows[TASK_SIZE : 2 * TASK_SIZE]),
        tuple(rows[2 * TASK_SIZE :]),
    ]
