"""The embedded HTTP server turns Nagle's algorithm off on every connection: uvicorn writes a
response's head and body separately, and with Nagle on, each response after the first on a
kept-alive connection waited about 40 ms for the client's delayed ACK."""

from __future__ import annotations

import asyncio
import socket

from starlette.types import Receive, Scope, Send

from floworch.hosting.http import HttpServer


async def _ok(scope: Scope, receive: Receive, send: Send) -> None:
    assert scope["type"] == "http"
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
    )
    await send({"type": "http.response.body", "body": b"ok"})


async def test_every_connection_has_nagle_off_and_stays_alive() -> None:
    server = HttpServer(_ok)
    await server.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        try:
            for _ in range(2):  # two requests on one kept-alive connection
                writer.write(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
                await writer.drain()
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
                assert head.startswith(b"HTTP/1.1 200")
                assert await asyncio.wait_for(reader.readexactly(2), 30) == b"ok"
            assert server._server is not None  # the uvicorn server's open connections
            connections = list(server._server.server_state.connections)
            assert len(connections) == 1
            sock = connections[0].transport.get_extra_info("socket")
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
        finally:
            writer.close()
            await writer.wait_closed()
    finally:
        await server.stop()
