"""The Service Bus management (ATOM over HTTPS) endpoint that ``ServiceBusAdministrationClient``
talks to, serving entity descriptions from a :class:`ManagementBackend`.

Example:
    >>> server = ManagementServer(InMemoryManagementBackend())
    >>> server.start()
    >>> client = ServiceBusAdministrationClient.from_connection_string(
    ...     server.connection_string("k", "v"), connection_verify=str(server.ca_file))
    >>> server.stop()
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import tempfile
import threading
import urllib.parse
from collections.abc import Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

from floworch.emulator.certs import write_self_signed_certificate
from floworch.emulator.entities import ManagementBackend
from floworch.emulator.management_routes import ManagementRoutes, RouteResult
from floworch.emulator.sas import check_sas_token

logger = logging.getLogger(__name__)

__all__ = ["ManagementServer", "check_sas_authorization"]


def check_sas_authorization(
    header: str | None,
    keys: Mapping[str, str] | None = None,
    *,
    now: float | None = None,
    audience: str | None = None,
) -> str | None:
    """Why a ``SharedAccessSignature`` Authorization header is rejected, or ``None`` if accepted.

    The header must carry ``sr``, ``sig``, ``se`` (an unexpired Unix time) and ``skn``. With
    ``keys`` (key name -> key), the HMAC-SHA256 signature over ``sr + "\\n" + se`` is checked
    too; with ``audience`` (the URL requested), ``sr`` must cover it (see
    :func:`floworch.emulator.sas.check_sas_token`).
    """
    if not header:
        return "missing Authorization header"
    return check_sas_token(header, keys, audience=audience, now=now)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the SDK reuses its connection
    server: _TlsHttpServer

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("management %s - " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        try:
            body = self._read_body()
            if body is None:
                return
            host = self.headers.get("Host") or f"127.0.0.1:{self.server.server_address[1]}"
            audience = None
            if self.server.strict_auth:
                audience = f"https://{host}{urllib.parse.urlsplit(self.path).path}"
            reason = check_sas_authorization(
                self.headers.get("Authorization"), self.server.keys, audience=audience
            )
            if reason is not None:
                result = self.server.routes.error(HTTPStatus.UNAUTHORIZED, reason)
            else:
                result = self.server.routes.handle(
                    method,
                    self.path,
                    body,
                    host=host,
                    if_match=self.headers.get("If-Match"),
                )
        except Exception:  # never let a request kill the server thread
            logger.exception("management request %s %s failed", method, self.path)
            result = self.server.routes.error(
                HTTPStatus.INTERNAL_SERVER_ERROR, "internal error in the emulator"
            )
        self._send(result)

    def _read_body(self) -> bytes | None:
        length_text = self.headers.get("Content-Length", "0")
        try:
            length = int(length_text)
        except ValueError:
            self._send(self.server.routes.error(HTTPStatus.BAD_REQUEST, "bad Content-Length"))
            return None
        if length < 0 or length > 4 * 1024 * 1024:
            self._send(self.server.routes.error(HTTPStatus.BAD_REQUEST, "body too large"))
            self.close_connection = True
            return None
        return self.rfile.read(length) if length else b""

    def _send(self, result: RouteResult) -> None:
        self.send_response(result.status)
        self.send_header("Content-Type", result.content_type)
        self.send_header("Content-Length", str(len(result.body)))
        self.end_headers()
        self.wfile.write(result.body)


class _TlsHttpServer(ThreadingHTTPServer):
    """Threads per connection; TLS handshakes happen in those threads, not in the accept loop."""

    daemon_threads = False
    block_on_close = True

    def __init__(
        self,
        address: tuple[str, int],
        *,
        context: ssl.SSLContext,
        routes: ManagementRoutes,
        keys: Mapping[str, str] | None,
        strict_auth: bool,
    ) -> None:
        super().__init__(address, _Handler)
        self.context = context
        self.routes = routes
        self.keys = keys
        self.strict_auth = strict_auth
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()

    def finish_request(self, request: Any, client_address: Any) -> None:
        raw: socket.socket = request
        raw.settimeout(30)  # a stalled client must not pin a thread forever
        # wrap_socket detaches ``raw``; a duplicate descriptor of the same socket lets stop()
        # shut the connection down (waking a blocked read) whatever state TLS is in.
        waker = raw.dup()
        with self._open_lock:
            self._open.add(waker)
        try:
            try:
                tls = self.context.wrap_socket(raw, server_side=True)
            except (ssl.SSLError, OSError) as exc:
                logger.debug("TLS handshake from %s failed: %s", client_address, exc)
                return
            try:
                _Handler(tls, client_address, self)
            finally:
                with contextlib.suppress(OSError):
                    tls.close()
        finally:
            with self._open_lock:
                self._open.discard(waker)
            waker.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.debug("management connection from %s ended with an error", client_address)

    def close_open_connections(self) -> None:
        with self._open_lock:
            sockets = list(self._open)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class ManagementServer:
    """HTTPS server for the Service Bus management API on its own thread.

    Args:
        backend: Where entity descriptions live (the broker, or an in-memory backend).
        host: Interface to listen on.
        port: TCP port; ``0`` picks a free one (read it from :attr:`port` after :meth:`start`).
        shared_access_keys: Key name -> key; when given, token signatures are verified too.
        strict_auth: Also check that each token's resource (``sr``) covers the requested URL
            (this endpoint's host and port, the entity path or a parent of it).
    """

    def __init__(
        self,
        backend: ManagementBackend,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        shared_access_keys: Mapping[str, str] | None = None,
        strict_auth: bool = False,
    ) -> None:
        self._routes = ManagementRoutes(backend)
        self._host = host
        self._requested_port = port
        self._keys = dict(shared_access_keys) if shared_access_keys is not None else None
        self._strict_auth = strict_auth
        self._server: _TlsHttpServer | None = None
        self._thread: threading.Thread | None = None
        self._tempdir: tempfile.TemporaryDirectory[str] | None = None
        self._ca_file: Path | None = None

    @property
    def port(self) -> int:
        """The bound TCP port (only after :meth:`start`)."""
        if self._server is None:
            raise RuntimeError("the management server is not started")
        return int(self._server.server_address[1])

    @property
    def ca_file(self) -> Path:
        """The PEM certificate clients pass as ``connection_verify`` (only after :meth:`start`)."""
        if self._ca_file is None:
            raise RuntimeError("the management server is not started")
        return self._ca_file

    def connection_string(self, key_name: str, key: str) -> str:
        """A connection string that points the administration client at this server."""
        return (
            f"Endpoint=sb://127.0.0.1:{self.port};SharedAccessKeyName={key_name};"
            f"SharedAccessKey={key};UseDevelopmentEmulator=true"
        )

    def start(self) -> None:
        """Create the certificate, bind the port and serve on a background thread."""
        if self._server is not None:
            raise RuntimeError("the management server is already started")
        self._tempdir = tempfile.TemporaryDirectory(prefix="floworch-sb-mgmt-")
        files = write_self_signed_certificate(Path(self._tempdir.name))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(files.cert_file, files.key_file)
        try:
            self._server = _TlsHttpServer(
                (self._host, self._requested_port),
                context=context,
                routes=self._routes,
                keys=self._keys,
                strict_auth=self._strict_auth,
            )
        except OSError:
            self._tempdir.cleanup()
            self._tempdir = None
            raise
        self._ca_file = files.cert_file
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"floworch-sb-management-{self.port}",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving, close every connection, join every thread and delete the certificate."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.close_open_connections()
            server.server_close()  # joins the per-connection threads (block_on_close)
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._tempdir is not None:
            self._tempdir.cleanup()
            self._tempdir = None
        self._ca_file = None

    def __enter__(self) -> ManagementServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
