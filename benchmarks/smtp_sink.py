"""An SMTP server in its own process for the benchmarks and the chaos run.

It accepts every message, or, when asked, answers a share of them with a 451 (try later)
or a 550 (refused), or drops the connection after the message content without an answer
(the client cannot know whether it was taken). Each message it receives is one line in
the log file: `<outcome> <Message-ID>`, outcome `accepted`, `tempfail`, `rejected` or
`dropped`; a dropped message is written before the connection goes, so the log holds
every message the server could have delivered.

    .venv/bin/python -m benchmarks.smtp_sink --port 2525 [--log FILE]
        [--tempfail 0.1] [--reject 0.01] [--drop 0.01] [--seed N]
"""

from __future__ import annotations

import argparse
import random
import signal
import threading
from email.parser import BytesHeaderParser
from typing import IO, Any

from aiosmtpd.controller import Controller

_HEADERS = BytesHeaderParser()


class Sink:
    def __init__(
        self, log: IO[str] | None, tempfail: float, reject: float, drop: float, seed: int
    ) -> None:
        self.log, self.tempfail, self.reject, self.drop = log, tempfail, reject, drop
        self.random = random.Random(seed)

    def _note(self, outcome: str, content: bytes) -> None:
        if self.log is not None:
            message_id = _HEADERS.parsebytes(content).get("Message-ID", "-")
            self.log.write(f"{outcome} {message_id}\n")
            self.log.flush()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        roll = self.random.random()
        if roll < self.drop:
            self._note("dropped", envelope.content)
            server.transport.close()  # the reply never reaches the client
            return "250 OK"
        roll -= self.drop
        if roll < self.tempfail:
            self._note("tempfail", envelope.content)
            return "451 4.3.0 try again later"
        roll -= self.tempfail
        if roll < self.reject:
            self._note("rejected", envelope.content)
            return "550 5.1.1 no such user"
        self._note("accepted", envelope.content)
        return "250 OK queued"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log", help="a file to append one line per message to")
    parser.add_argument("--tempfail", type=float, default=0.0)
    parser.add_argument("--reject", type=float, default=0.0)
    parser.add_argument("--drop", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    log = open(args.log, "a", encoding="utf-8") if args.log else None  # noqa: SIM115
    sink = Sink(log, args.tempfail, args.reject, args.drop, args.seed)
    controller = Controller(sink, hostname="127.0.0.1", port=args.port, data_size_limit=10_000_000)
    controller.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(f"listening on 127.0.0.1:{args.port}", flush=True)
    stop.wait()
    controller.stop()
    if log is not None:
        log.close()


if __name__ == "__main__":
    main()
