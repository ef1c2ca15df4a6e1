"""The test TCP proxy: forwards, cuts live connections, refuses while cut, restores; loopback
only. Runs against an echo server on loopback."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from floworch.testing.tcp_proxy import TcpProxy


@pytest.fixture
def echo_port() -> Iterator[int]:
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()
    peers: list[socket.socket] = []

    def serve(conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            try:
                while data := conn.recv(4096):
                    conn.sendall(data)
            except OSError:
                pass

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            peers.append(conn)
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def roundtrip(port: int, payload: bytes = b"ping") -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(payload)
        return conn.recv(4096)


def refused_on(conn: socket.socket) -> bool:
    """Whether the proxy dropped ``conn``: a reset, or end of stream instead of the echo."""
    try:
        conn.sendall(b"x")
        return conn.recv(4096) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True


def refused(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
            return refused_on(conn)
    except (ConnectionRefusedError, ConnectionResetError):
        return True


def test_forwards_cuts_refuses_and_restores(echo_port: int) -> None:
    with TcpProxy("127.0.0.1", echo_port) as proxy:
        assert roundtrip(proxy.port) == b"ping"
        live = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
        with live:
            live.sendall(b"a")
            assert live.recv(16) == b"a"
            assert proxy.live_connections == 1
            proxy.cut()
            assert proxy.is_cut
            assert refused_on(live)
        assert refused(proxy.port)
        assert proxy.stats.refused >= 1 and proxy.stats.cut == 1
        proxy.restore()
        assert roundtrip(proxy.port, b"again") == b"again"
        assert proxy.stats.accepted == 3


def test_a_dead_target_resets_the_client() -> None:
    spare = socket.create_server(("127.0.0.1", 0))
    port = int(spare.getsockname()[1])
    spare.close()  # nothing listens there now
    with TcpProxy("127.0.0.1", port, connect_timeout=2) as proxy:
        assert refused(proxy.port)
        assert proxy.stats.failed_upstream == 1


@pytest.mark.parametrize(
    ("target", "options"),
    [
        ("10.0.0.1", {}),
        ("127.0.0.1", {"listen_host": "0.0.0.0"}),
        ("127.0.0.1", {"listen_port": 5672}),
    ],
)
def test_loopback_only_and_never_5672(target: str, options: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        TcpProxy(target, 5432, **options)  # type: ignore[arg-type]
