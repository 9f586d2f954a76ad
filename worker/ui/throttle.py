"""Wrong dashboard tokens from one address slow that address down.

The tokens are long and random, so guessing one is not practical; this keeps it that way
cheaply and keeps a script hammering the sign-in from filling the log. After `LIMIT` wrong
tokens within `WINDOW` seconds an address is refused (429) until the oldest of them ages
out. Kept in the process's memory: each API process counts its own, and a restart forgets.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable

LIMIT = 5
WINDOW = 300.0
ADDRESSES = 10_000  # remembered at most: the oldest is forgotten first


class LoginThrottle:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, address: str, now: float) -> deque[float]:
        times = self._failures.get(address, deque())
        while times and now - times[0] >= WINDOW:
            times.popleft()
        return times

    def wait(self, address: str) -> float:
        """Seconds until `address` may try again; 0 when it may now."""
        with self._lock:
            now = self._clock()
            times = self._recent(address, now)
            if len(times) < LIMIT:
                return 0.0
            return WINDOW - (now - times[0])

    def failed(self, address: str) -> None:
        with self._lock:
            now = self._clock()
            times = self._recent(address, now)
            times.append(now)
            self._failures[address] = times
            self._failures.move_to_end(address)
            while len(self._failures) > ADDRESSES:
                self._failures.popitem(last=False)

    def succeeded(self, address: str) -> None:
        with self._lock:
            self._failures.pop(address, None)
