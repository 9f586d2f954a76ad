"""The load generator for benchmarks.ingest, run in its own process: N signed webhooks
over C keep-alive HTTP/1.1 connections, as fast as the server answers. Requests are built
and signed before the clock starts. Prints one JSON line: rate, latency percentiles and
the count of answers by status.

    python -m benchmarks.load --port 8000 --events 20000 --connections 32 --secret whsec_…
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from collections import Counter

from worker.intake.signatures import signed_headers


def requests(count: int, secret: str, run: str) -> list[bytes]:
    built = []
    now = int(time.time())
    for i in range(count):
        body = json.dumps(
            {
                "type": "deal.closed",
                "timestamp": "2026-11-20T10:00:00Z",
                "data": {
                    "contact": {"email": f"load{i}@example.org", "first_name": "Anna"},
                    "deal": {"id": f"{run}-{i}", "amount": "500", "currency": "EUR"},
                },
            }
        ).encode()
        headers = signed_headers(secret, f"{run}-{i}", now, body)
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        built.append(
            (
                "POST /webhooks/generic HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n{head}\r\n"
            ).encode()
            + body
        )
    return built


async def connection(
    port: int, queue: list[bytes], latencies: list[float], statuses: Counter[int]
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while queue:
            request = queue.pop()
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            start = head.lower().find(b"content-length:")
            length = int(head[start + 15 : head.index(b"\r\n", start)]) if start >= 0 else 0
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            statuses[int(head[9:12])] += 1
    finally:
        writer.close()


async def run(port: int, count: int, connections: int, secret: str) -> dict[str, object]:
    queue = requests(count, secret, uuid.uuid4().hex[:10])
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    started = time.perf_counter()
    await asyncio.gather(
        *(connection(port, queue, latencies, statuses) for _ in range(connections))
    )
    seconds = time.perf_counter() - started
    latencies.sort()
    return {
        "requests": len(latencies),
        "seconds": round(seconds, 2),
        "per_second": round(len(latencies) / seconds, 1),
        "p50_ms": round(latencies[len(latencies) // 2] * 1000, 2),
        "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 2),
        "statuses": {str(k): v for k, v in statuses.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--secret", required=True)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.port, args.events, args.connections, args.secret))))


if __name__ == "__main__":
    main()
