"""Serving the HTTP API inside a host's event loop (uvicorn, no thread), and the host-side
settings it needs: auth from the environment and webhook secrets.

``floworch serve`` and ``floworch worker --http-port`` both use :class:`HttpServer`; the
Function App serves the same app through ``func.AsgiFunctionApp`` instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Generator, Iterable, Mapping
from dataclasses import dataclass

import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.h11_impl import H11Protocol

from floworch.api.auth import AuthConfig, AuthMode, is_loopback
from floworch.errors import FlowError
from floworch.model import FlowDefinition
from floworch.model.triggers import WebhookTrigger

log = logging.getLogger("floworch.hosting.http")


class HostConfigError(FlowError):
    """A host cannot start as configured (the message says which setting to change)."""


class _EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to its host."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class _NoDelayH11Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol on a connection with Nagle's algorithm off.

    uvicorn writes a response's head and body separately; with Nagle on, the body of every
    response after the first on a kept-alive connection waited for the client's delayed ACK
    (measured: 0.5 ms for the first ``/healthz``, 41-44 ms for each one after it).
    """

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)  # type: ignore[arg-type]


class HttpServer:
    """Serves an ASGI app on ``host:port`` in the running event loop (port 0: a free one).

    Raises (from :meth:`start`):
        HostConfigError: the address cannot be bound.
    """

    def __init__(self, app: ASGIApp, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self._app = app
        self._host = host
        self._requested_port = port
        self._server: _EmbeddedServer | None = None
        self._task: asyncio.Task[None] | None = None
        self._port: int | None = None

    @property
    def port(self) -> int:
        """The bound port (after :meth:`start`)."""
        if self._port is None:
            raise RuntimeError("the HTTP server is not started")
        return self._port

    @property
    def url(self) -> str:
        """The base URL (after :meth:`start`)."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self._host, self._requested_port))
        except OSError as exc:
            sock.close()
            raise HostConfigError(
                f"cannot listen on {self._host}:{self._requested_port}: {exc.strerror or exc}; "
                "choose another --port or --host"
            ) from exc
        sock.listen(128)
        sock.setblocking(False)
        self._port = int(sock.getsockname()[1])
        config = uvicorn.Config(
            self._app,
            lifespan="off",
            access_log=False,
            log_level="warning",
            timeout_graceful_shutdown=3,
            server_header=False,
            http=_NoDelayH11Protocol,
        )
        server = _EmbeddedServer(config)
        self._server = server
        self._task = asyncio.create_task(server.serve(sockets=[sock]), name="floworch-http")
        while not server.started:
            if self._task.done():
                self._task.result()
                raise HostConfigError(f"the HTTP server on {self.url} stopped while starting")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        server, task = self._server, self._task
        self._server, self._task = None, None
        if server is None or task is None:
            return
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError, SystemExit):
            await task
        self._port = None


@dataclass(frozen=True)
class ApiEnvironment:
    """What the API takes from the environment (read by hosts only).

    Attributes:
        token: ``FLOWORCH_API_TOKEN`` (operator).
        read_token: ``FLOWORCH_API_READ_TOKEN`` (read-only).
        auth: ``FLOWORCH_API_AUTH``: ``token`` (default when a token is set), ``appservice``
            (behind App Service / Functions authentication) or ``none``.
    """

    token: str | None = None
    read_token: str | None = None
    auth: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ApiEnvironment:
        return cls(
            token=env.get("FLOWORCH_API_TOKEN") or None,
            read_token=env.get("FLOWORCH_API_READ_TOKEN") or None,
            auth=(env.get("FLOWORCH_API_AUTH") or "").strip().lower() or None,
        )


def auth_for(settings: ApiEnvironment, host: str, *, insecure_no_auth: bool = False) -> AuthConfig:
    """The auth setting of a host bound to ``host``.

    Off only on a loopback address with nothing configured, or with ``insecure_no_auth``.

    Raises:
        HostConfigError: a non-loopback host with no credentials configured, or a bad value.
    """
    mode = settings.auth
    if mode not in (None, "token", "appservice", "none"):
        raise HostConfigError(f"FLOWORCH_API_AUTH={mode!r} is not one of token, appservice, none")
    if mode == "appservice":
        return AuthConfig(mode=AuthMode.APP_SERVICE)
    if settings.token or settings.read_token:
        if mode == "none":
            raise HostConfigError(
                "FLOWORCH_API_AUTH=none contradicts FLOWORCH_API_TOKEN: unset one of them"
            )
        try:
            return AuthConfig.tokens(settings.token, settings.read_token)
        except ValueError as exc:
            raise HostConfigError(f"FLOWORCH_API_TOKEN / FLOWORCH_API_READ_TOKEN: {exc}") from exc
    if mode == "token":
        raise HostConfigError("FLOWORCH_API_AUTH=token needs FLOWORCH_API_TOKEN to be set")
    if is_loopback(host) or insecure_no_auth:
        return AuthConfig.none()
    raise HostConfigError(
        f"refusing to serve the API on {host} without authentication: set FLOWORCH_API_TOKEN "
        "(and optionally FLOWORCH_API_READ_TOKEN), or bind to 127.0.0.1, or pass "
        "--insecure-no-auth"
    )


def webhook_secrets(
    flows: Iterable[FlowDefinition], env: Mapping[str, str]
) -> tuple[dict[tuple[str, str], str], list[str]]:
    """Resolves each webhook trigger's ``secretFrom`` from ``env``.

    Returns:
        The secrets by (flow id, trigger key), and one warning line per webhook whose secret is
        not configured (it will refuse deliveries).
    """
    secrets: dict[tuple[str, str], str] = {}
    warnings: list[str] = []
    for flow in flows:
        for key, trigger in flow.triggers.items():
            if not isinstance(trigger, WebhookTrigger):
                continue
            name = trigger.secret_env
            value = env.get(name) if name else None
            if value:
                secrets[(flow.id, key)] = value
            elif name:
                warnings.append(
                    f"webhook {trigger.slug!r} ({flow.id}.{key}) refuses deliveries: "
                    f"environment variable {name} is not set"
                )
            else:
                warnings.append(
                    f"webhook {trigger.slug!r} ({flow.id}.{key}) refuses deliveries: it names "
                    "no secret (add secretFrom: {env: NAME} to the trigger)"
                )
    return secrets, warnings
