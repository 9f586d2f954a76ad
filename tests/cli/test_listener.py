"""The API's listening socket: connections accepted on it have Nagle's algorithm off."""

from __future__ import annotations

import asyncio
import socket

from worker.cli.serve import tcp_listener


def test_connections_accepted_on_the_api_socket_have_no_nagle_delay() -> None:
    """asyncio sets TCP_NODELAY only on sockets that say they are TCP; a listener made by
    `socket.create_server` says proto 0, and uvicorn then answers a keep-alive request
    ~40 ms late (headers and body in two writes wait for the client's delayed ACK)."""
    listener = tcp_listener("127.0.0.1", 0)
    port = listener.getsockname()[1]
    seen: list[int] = []

    async def main() -> None:
        def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            sock = writer.get_extra_info("socket")
            seen.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(accepted, sock=listener)
        async with server:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            for _ in range(100):
                if seen:
                    break
                await asyncio.sleep(0.01)
            writer.close()

    asyncio.run(main())
    listener.close()
    assert seen and seen[0] != 0


def test_the_standard_library_listener_would_leave_nagle_on() -> None:
    """The control: the same check fails for the listener the API used before."""
    listener = socket.create_server(("127.0.0.1", 0))
    assert listener.proto != socket.IPPROTO_TCP
    listener.close()
    ours = tcp_listener("127.0.0.1", 0)
    assert ours.proto == socket.IPPROTO_TCP
    ours.close()
