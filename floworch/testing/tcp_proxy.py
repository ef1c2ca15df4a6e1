"""A loopback TCP forwarder that tests can cut and restore, to simulate a network outage between
a process and a server (a worker and its database, say).

Example:
    >>> with TcpProxy("127.0.0.1", 5432) as proxy:  # doctest: +SKIP
    ...     url = f"postgresql+psycopg://postgres@127.0.0.1:{proxy.port}/test"
    ...     proxy.cut()      # live connections drop, new ones are reset at once
    ...     proxy.restore()  # connections are forwarded again

The proxy runs its own event loop on a daemon thread, so synchronous and asynchronous tests use it
alike. It listens on loopback only and only forwards to loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import struct
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import TypeVar

log = logging.getLogger("floworch.testing.tcp_proxy")

T = TypeVar("T")

_CALL_TIMEOUT = 10.0
_CHUNK = 64 * 1024
#: AMQP's port: often held by a local broker; the proxy never listens on it.
_FORBIDDEN_PORT = 5672


def _require_loopback(host: str, what: str) -> None:
    if host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(f"the test proxy's {what} must be a loopback address, not {host!r}")


@dataclass
class ProxyStats:
    """What the proxy did, for assertions."""

    accepted: int = 0
    refused: int = 0
    cut: int = 0
    failed_upstream: int = 0


class TcpProxy:
    """Forwards ``listen_host:port`` to ``target_host:target_port`` until cut or stopped.

    Args:
        target_host: the server's loopback address.
        target_port: the server's port.
        listen_host: loopback interface to listen on.
        listen_port: port to listen on (0: a free one; see :attr:`port`). Never 5672.
        connect_timeout: how long an upstream connect may take before the client is dropped.
    """

    def __init__(
        self,
        target_host: str,
        target_port: int,
        *,
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
        connect_timeout: float = 5.0,
    ) -> None:
        _require_loopback(listen_host, "listen address")
        _require_loopback(target_host, "target")
        if listen_port == _FORBIDDEN_PORT:
            raise ValueError(f"the test proxy does not listen on port {_FORBIDDEN_PORT} (AMQP)")
        self._target = (target_host, target_port)
        self._listen = (listen_host, listen_port)
        self._connect_timeout = connect_timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._port: int | None = None
        self._open = True
        self._live: set[asyncio.WriteTransport] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.stats = ProxyStats()

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> TcpProxy:
        """Binds the listening port and starts forwarding.

        Raises:
            OSError: the port cannot be bound.
        """
        if self._thread is not None:
            raise RuntimeError("the proxy is already started")
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            loop.run_forever()
            loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=run, name="floworch-tcp-proxy", daemon=True)
        self._thread.start()
        if not ready.wait(_CALL_TIMEOUT):
            raise RuntimeError("the proxy's event loop did not start")
        try:
            self._call(self._serve)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Closes the listener and every connection, stops the thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if thread.is_alive():
            with contextlib.suppress(Exception):
                self._call(self._shutdown)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(_CALL_TIMEOUT)
        self._loop, self._thread, self._port = None, None, None

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The listening port (after :meth:`start`)."""
        if self._port is None:
            raise RuntimeError("the proxy is not started")
        return self._port

    @property
    def is_cut(self) -> bool:
        """Whether the proxy is refusing connections."""
        return not self._open

    @property
    def live_connections(self) -> int:
        """Connections being forwarded now."""
        return len(self._live) // 2

    # -- the outage --------------------------------------------------------------------------

    def cut(self) -> None:
        """Drops every live connection and resets new ones until :meth:`restore`."""

        async def cut() -> None:
            self._open = False
            dropped = len(self._live) // 2
            for transport in list(self._live):
                _abort_with_reset(transport)
            self._live.clear()
            self.stats.cut += dropped

        self._call(cut)

    def restore(self) -> None:
        """Forwards new connections again."""

        async def restore() -> None:
            self._open = True

        self._call(restore)

    # -- internals ---------------------------------------------------------------------------

    def _call(self, make: Callable[[], Awaitable[T]]) -> T:
        if self._loop is None:
            raise RuntimeError("the proxy is not started")

        async def run() -> T:
            return await make()

        future = asyncio.run_coroutine_threadsafe(run(), self._loop)
        return future.result(_CALL_TIMEOUT)

    async def _serve(self) -> None:
        host, port = self._listen
        self._server = await asyncio.start_server(self._accept, host, port, reuse_address=True)
        self._port = int(self._server.sockets[0].getsockname()[1])

    async def _shutdown(self) -> None:
        self._open = False
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for transport in list(self._live):
            transport.abort()
        self._live.clear()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), _CALL_TIMEOUT / 2)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._forward(reader, writer)
        finally:
            self._tasks.discard(task)

    async def _forward(
        self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        if not self._open:
            self.stats.refused += 1
            _reset(client_writer)
            return
        try:
            server_reader, server_writer = await asyncio.wait_for(
                asyncio.open_connection(*self._target), self._connect_timeout
            )
        except (OSError, TimeoutError) as exc:
            self.stats.failed_upstream += 1
            log.warning("proxy could not reach %s:%d: %s", *self._target, exc)
            _reset(client_writer)
            return
        if not self._open:  # cut while connecting
            self.stats.refused += 1
            _reset(client_writer)
            _reset(server_writer)
            return
        self.stats.accepted += 1
        pair = {_transport(client_writer), _transport(server_writer)}
        self._live.update(pair)
        try:
            await asyncio.gather(
                _pipe(client_reader, server_writer), _pipe(server_reader, client_writer)
            )
        finally:
            self._live.difference_update(pair)
            for transport in pair:
                transport.abort()


def _transport(writer: asyncio.StreamWriter) -> asyncio.WriteTransport:
    transport = writer.transport
    assert isinstance(transport, asyncio.WriteTransport)
    return transport


def _reset(writer: asyncio.StreamWriter) -> None:
    _abort_with_reset(writer.transport)


def _abort_with_reset(transport: asyncio.WriteTransport) -> None:
    """Closes with a TCP reset, so the peer fails at once instead of waiting."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copies bytes one way until either side closes; then closes the other side too."""
    try:
        while data := await reader.read(_CHUNK):
            writer.write(data)
            await writer.drain()
    except (OSError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.transport.abort()
