"""The real stack as separate processes, for the chaos run: a Redis server of its own (so
it can be flushed and restarted), a throwaway PostgreSQL database, the SMTP sink process,
`thankly api`, two `thankly worker` processes and `thankly scheduler`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis

from benchmarks.tick_cost import throwaway_database
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
PG_SERVER = os.environ.get(
    "THANKLY_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def _start(command: list[str], env: dict[str, str] | None, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            command, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: a kill takes its children too
        )  # fmt: skip


def _stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, wait: float = 20) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, sig)
        proc.wait(timeout=wait)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@dataclass
class RedisServer:
    folder: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = _start(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.folder)],
            None, self.folder / "redis.log",
        )  # fmt: skip
        client = redis.Redis.from_url(self.url)
        for _ in range(100):
            try:
                client.ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc)

    def flush(self) -> None:
        redis.Redis.from_url(self.url).flushall()


@contextmanager
def throwaway_postgres(folder: Path) -> Iterator[str]:
    """A database of its own on the test server, dropped afterwards."""
    with throwaway_database(PG_SERVER, folder) as url:
        yield url


@dataclass
class Stack:
    env: dict[str, str]
    logs: Path
    api_port: int = field(default_factory=free_port)
    api: subprocess.Popen[bytes] | None = None
    scheduler: subprocess.Popen[bytes] | None = None
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    kills: int = 0

    def _thankly(self, *args: str, name: str) -> subprocess.Popen[bytes]:
        return _start([sys.executable, "-m", "worker.cli", *args], self.env, self.logs / name)

    def start(self) -> None:
        self.api = self._thankly(
            "api", "--port", str(self.api_port), "--workers", "1", name="api.log"
        )
        self.scheduler = self._thankly("scheduler", name="scheduler.log")
        self.workers = [self._worker(i) for i in range(2)]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=1).status_code < 500:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError("thankly api did not start; see api.log")

    def _worker(self, index: int) -> subprocess.Popen[bytes]:
        # The default pool, or THANKLY_CHAOS_POOL (e.g. prefork) for the same faults.
        pool = os.environ.get("THANKLY_CHAOS_POOL", "threads")
        return self._thankly(
            "worker", "--concurrency", "2", "--pool", pool, name=f"worker{index}.log"
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def kill_worker(self, index: int) -> None:
        """SIGKILL a worker's whole process group (parent and pool), then start it again."""
        _stop(self.workers[index], signal.SIGKILL)
        self.kills += 1
        self.workers[index] = self._worker(index)

    def stop(self) -> None:
        for proc in [*self.workers, self.scheduler, self.api]:
            if proc is not None:
                _stop(proc)
