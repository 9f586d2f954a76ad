"""Serves a baseline ASGI app the way `thankly api --workers N` serves Thankly: one
listening socket bound by the parent (with TCP_NODELAY on its connections, see
`worker.cli.serve.tcp_listener`), N forked uvicorn processes sharing it, no access log.
uvicorn's own `--workers` leaves Nagle's algorithm on, which would cost the baseline
~40 ms per keep-alive request and flatter Thankly.

    python -m benchmarks.serve_app MODULE:APP --port P [--workers N]
"""

from __future__ import annotations

import argparse
import os
import signal

import uvicorn

from worker.cli.serve import tcp_listener


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("app")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    sock = tcp_listener("127.0.0.1", args.port)
    children = []
    for _ in range(args.workers):
        pid = os.fork()
        if pid == 0:
            config = uvicorn.Config(args.app, access_log=False, log_level="warning")
            uvicorn.Server(config).run(sockets=[sock])
            os._exit(0)
        children.append(pid)

    def stop(*_: object) -> None:
        for child in children:
            os.kill(child, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    for child in children:
        while True:
            try:
                os.waitpid(child, 0)
                break
            except InterruptedError:
                continue


if __name__ == "__main__":
    main()
