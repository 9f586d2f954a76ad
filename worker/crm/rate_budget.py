"""A CRM's request budget, shared by every Thankly process that calls it.

HubSpot allows a private app a number of requests per rolling 10 seconds, counted over the
whole account, so the API, every worker and the scheduler draw from one budget: a counter
per fixed window in Redis (the broker) when there is one, else one in this process (the
embedded mode has one process). A call over budget waits for the next window when that is
short; otherwise it fails as a passing error, and the one retry policy brings it back.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import redis

from worker.retry import CallError

# Waiting longer than this inside a call ties up a worker: hand the wait to the retry policy.
MAX_WAIT = 10.0


class RateBudget:
    def __init__(
        self,
        name: str,
        limit: int,
        window: float,
        redis_url: str | None = None,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.name, self.limit, self.window = name, limit, window
        shared = (redis_url or "").startswith(("redis://", "rediss://"))
        self._redis = redis.Redis.from_url(redis_url) if redis_url and shared else None
        self._clock, self._sleep = clock, sleep
        self._lock = threading.Lock()
        self._local: dict[int, int] = {}

    def take(self) -> None:
        """One request's worth, waiting for the next window if this one is spent."""
        while True:
            now = self._clock()
            index = int(now // self.window)
            if self._count(index) <= self.limit:
                return
            wait = (index + 1) * self.window - now
            if wait > MAX_WAIT:
                raise CallError(
                    f"{self.name} request budget spent", permanent=False, retry_after=wait
                )
            self._sleep(wait)

    def _count(self, index: int) -> int:
        if self._redis is None:
            with self._lock:
                self._local = {index: self._local.get(index, 0) + 1}
                return self._local[index]
        key = f"thankly:budget:{self.name}:{index}"
        try:
            pipe = self._redis.pipeline()
            pipe.incr(key)
            pipe.expire(key, int(self.window * 2) + 1)
            count, _ = pipe.execute()
        except redis.RedisError as exc:
            raise CallError(f"{self.name} request budget: Redis: {exc}", permanent=False) from None
        return int(count)
