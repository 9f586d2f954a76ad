"""`thankly api --workers N`: N API processes sharing one listening socket.

The parent binds the socket and checks the configuration once (so a mistake is one line
and exit 2, not N tracebacks), then forks. Each child builds its own runtime (database
pool, broker connection) after the fork, since connections must never cross one, and
serves the socket; the kernel hands each connection to one of them. The parent only
supervises: a child that dies is replaced (after a pause that grows while they keep
dying), and SIGTERM or SIGINT is passed on to every child, which finish their requests.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import time
from collections.abc import Callable
from types import FrameType

log = logging.getLogger(__name__)

MAX_PAUSE = 30.0
PR_SET_PDEATHSIG = 1  # <sys/prctl.h>


def _die_with_parent() -> None:
    """Ask Linux to send this process SIGTERM when the parent dies, however it dies (even
    SIGKILL), so that no API process is left serving unsupervised."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: the supervisor's own SIGTERM still works
        return
    if os.getppid() == 1:  # the parent died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


def default_workers() -> int:
    """One API process per core, at most 8 (the machine this was measured on has 2)."""
    return max(1, min(os.cpu_count() or 1, 8))


def run_children(count: int, serve_child: Callable[[], None]) -> int:
    """Fork `count` children running `serve_child` and keep that many alive until told
    to stop; returns the exit status for the parent (0 after a clean stop)."""
    children: set[int] = set()
    stopping = False

    def spawn() -> None:
        pid = os.fork()
        if pid == 0:  # the child: serve until uvicorn returns, then leave at once
            status = 0
            try:
                _die_with_parent()
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                serve_child()
            except BaseException:
                log.exception("API process %s failed", os.getpid())
                status = 1
            os._exit(status)
        children.add(pid)

    def stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            with contextlib.suppress(ProcessLookupError):  # it has just exited
                os.kill(pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for _ in range(count):
        spawn()
    log.info("serving with %d API processes: %s", count, sorted(children))
    pause = 0.5
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        children.discard(pid)
        if stopping:
            continue
        log.error("API process %s exited (status %s); starting another", pid, status)
        time.sleep(pause)
        pause = min(pause * 2, MAX_PAUSE)
        if not stopping:
            spawn()
    return 0
