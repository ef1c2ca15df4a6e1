"""A local HTTPS fake of the Azure Resource Manager endpoints for Service Bus entities.

``azure-mgmt-servicebus``'s ``ServiceBusManagementClient`` talks to it through its normal
pipeline (bearer token, ``api-version``, JSON bodies, ``nextLink`` paging), so ARM-mode code can
be tested without Azure. It serves queues, topics, subscriptions and rules of one namespace
(``GET``/``PUT``/``DELETE`` and the list routes) and behaves like ARM where it matters: Service Bus
defaults, case-insensitive names, a ``$Default`` rule on every new subscription, settings that
cannot change on an existing entity, and ``PUT`` replacing the whole resource.

Example:
    >>> with ArmServiceBusFake() as arm:
    ...     client = ServiceBusManagementClient(
    ...         arm.credential(), arm.subscription_id, base_url=arm.url,
    ...         connection_verify=str(arm.ca_file))
    ...     client.queues.create_or_update(arm.resource_group, arm.namespace, "q", {})
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import json
import logging
import ssl
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

from azure.core.credentials import AccessToken

from floworch import strict_json
from floworch.emulator.certs import write_self_signed_certificate
from floworch.runtime.servicebus.topology.durations import (
    NEVER_TEXT,
    format_duration,
    parse_duration,
)
from floworch.runtime.servicebus.topology.model import (
    CHILD_NAME,
    ENTITY_NAME,
    CorrelationFilterSpec,
    QueueSettings,
    SubscriptionSettings,
    TopicSettings,
    new_subscription_rules,
)

logger = logging.getLogger(__name__)

__all__ = ["SUPPORTED_API_VERSIONS", "ArmRequest", "ArmServiceBusFake", "FakeTokenCredential"]

#: The api-versions the fake answers; 2026-01-01 is what azure-mgmt-servicebus 10.x sends.
SUPPORTED_API_VERSIONS = frozenset({"2021-11-01", "2022-10-01-preview", "2026-01-01"})
NEVER = NEVER_TEXT  # .NET TimeSpan.MaxValue, Service Bus's "never"
_PROVIDER = "Microsoft.ServiceBus/namespaces"
_NAME = {
    "queues": ENTITY_NAME,
    "topics": ENTITY_NAME,
    "subscriptions": CHILD_NAME,
    "rules": CHILD_NAME,
}
_TYPES = {
    "queues": f"{_PROVIDER}/queues",
    "topics": f"{_PROVIDER}/topics",
    "subscriptions": f"{_PROVIDER}/topics/subscriptions",
    "rules": f"{_PROVIDER}/topics/subscriptions/rules",
}
_ARM_NAMES = {"default_message_ttl": "defaultMessageTimeToLive"}
_NEVER_ABLE = {"default_message_ttl", "auto_delete_on_idle"}


def _arm_properties(description: object) -> dict[str, Any]:
    """A description of the shared model as ARM properties: its Service Bus defaults, camelCase
    names, ISO-8601 durations ("never" as TimeSpan.MaxValue), enums as their values."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(description):  # type: ignore[arg-type]
        if f.name in ("name", "topic_name"):
            continue
        value = getattr(description, f.name)
        if value is None and f.name not in _NEVER_ABLE:
            continue  # no forwarding, no metadata: ARM leaves the property out
        head, *rest = f.name.split("_")
        key = _ARM_NAMES.get(f.name, head + "".join(part.title() for part in rest))
        if f.name in _NEVER_ABLE or isinstance(value, timedelta):
            value = format_duration(value)
        elif isinstance(value, enum.Enum):
            value = value.value
        out[key] = value
    return out


# Service Bus's defaults, from the model every floworch backend shares.
_DEFAULTS: dict[str, dict[str, Any]] = {
    "queues": _arm_properties(QueueSettings(name="")),
    "topics": _arm_properties(TopicSettings(name="")),
    "subscriptions": {
        **_arm_properties(SubscriptionSettings(topic_name="", name="")),
        "isClientAffine": False,  # ARM only
    },
}
_IMMUTABLE = {
    "queues": ("requiresSession", "requiresDuplicateDetection", "enablePartitioning"),
    "topics": ("requiresDuplicateDetection", "enablePartitioning"),
    "subscriptions": ("requiresSession",),
}
_DURATIONS = {
    "lockDuration",
    "defaultMessageTimeToLive",
    "duplicateDetectionHistoryTimeWindow",
    "autoDeleteOnIdle",
}
_CORRELATION_KEYS = {
    "correlationId",
    "messageId",
    "to",
    "replyTo",
    "label",
    "sessionId",
    "replyToSessionId",
    "contentType",
}


class FakeTokenCredential:
    """A ``TokenCredential`` handing out a fixed bearer token; records the scopes asked for."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.scopes: list[str] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes.extend(scopes)
        return AccessToken(self.token, int(time.time()) + 3600)

    def close(self) -> None:
        """Nothing to release (credentials are closed after use, like DefaultAzureCredential)."""


@dataclass(frozen=True)
class ArmRequest:
    """One request the fake served."""

    method: str
    path: str
    api_version: str | None
    status: int


class _Fault(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


@dataclass
class _Resource:
    name: str
    properties: dict[str, Any]
    children: dict[str, _Resource] = field(default_factory=dict)


class ArmServiceBusFake:
    """The fake ARM endpoint for one namespace, on a free loopback port.

    Args:
        subscription_id: the Azure subscription id the namespace lives in.
        resource_group: its resource group.
        namespace: the namespace name.
        token: the bearer token requests must carry (see :meth:`credential`).
        page_size: entities per list page (``nextLink`` carries on).
        api_versions: the ``api-version`` values accepted.
    """

    def __init__(
        self,
        *,
        subscription_id: str = "00000000-0000-0000-0000-000000000001",
        resource_group: str = "floworch-rg",
        namespace: str = "floworch-ns",
        token: str = "fake-arm-token",
        page_size: int = 100,
        api_versions: frozenset[str] = SUPPORTED_API_VERSIONS,
    ) -> None:
        self.subscription_id = subscription_id
        self.resource_group = resource_group
        self.namespace = namespace
        self.token = token
        self.page_size = page_size
        self.api_versions = api_versions
        self.requests: list[ArmRequest] = []
        self.entities: dict[str, dict[str, _Resource]] = {"queues": {}, "topics": {}}
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._tempdir: tempfile.TemporaryDirectory[str] | None = None
        self._ca_file: Path | None = None

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> ArmServiceBusFake:
        """Make a certificate, bind a free port on 127.0.0.1 and serve on a thread."""
        if self._server is not None:
            raise RuntimeError("the ARM fake is already started")
        self._tempdir = tempfile.TemporaryDirectory(prefix="floworch-arm-fake-")
        files = write_self_signed_certificate(Path(self._tempdir.name), common_name="arm-fake")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(files.cert_file, files.key_file)
        self._server = _Server(("127.0.0.1", 0), context=context, fake=self)
        self._ca_file = files.cert_file
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="floworch-arm-fake",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, join the threads and delete the certificate."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._tempdir is not None:
            self._tempdir.cleanup()
            self._tempdir = None

    def __enter__(self) -> ArmServiceBusFake:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The ``base_url`` to give ``ServiceBusManagementClient``."""
        if self._server is None:
            raise RuntimeError("the ARM fake is not started")
        return f"https://127.0.0.1:{self._server.server_address[1]}"

    @property
    def ca_file(self) -> Path:
        """The self-signed certificate to trust (``connection_verify=str(ca_file)``)."""
        if self._ca_file is None:
            raise RuntimeError("the ARM fake is not started")
        return self._ca_file

    def credential(self) -> FakeTokenCredential:
        """A credential whose token the fake accepts."""
        return FakeTokenCredential(self.token)

    @property
    def namespace_path(self) -> str:
        """The namespace's resource id."""
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
            f"/providers/{_PROVIDER}/{self.namespace}"
        )

    # --- requests -------------------------------------------------------------------------

    def handle(
        self, method: str, raw_path: str, body: bytes, authorization: str | None
    ) -> tuple[int, dict[str, Any] | None]:
        """Serve one request: status and JSON body (``None`` for an empty body)."""
        parsed = urllib.parse.urlsplit(raw_path)
        query = {k: v[-1] for k, v in urllib.parse.parse_qs(parsed.query).items()}
        api_version = query.get("api-version")
        try:
            if authorization != f"Bearer {self.token}":
                raise _Fault(401, "InvalidAuthenticationToken", "The access token is invalid.")
            if api_version is None:
                raise _Fault(400, "MissingApiVersionParameter", "The api-version is missing.")
            if api_version not in self.api_versions:
                raise _Fault(
                    400,
                    "InvalidApiVersionParameter",
                    f"The api-version '{api_version}' is invalid. The supported versions are "
                    f"'{', '.join(sorted(self.api_versions))}'.",
                )
            with self._lock:
                status, payload = self._route(method, parsed.path, query, body)
        except _Fault as fault:
            status = fault.status
            payload = {"error": {"code": fault.code, "message": str(fault)}}
        with self._lock:
            self.requests.append(ArmRequest(method, parsed.path, api_version, status))
        return status, payload

    def _route(
        self, method: str, path: str, query: Mapping[str, str], body: bytes
    ) -> tuple[int, dict[str, Any] | None]:
        prefix = self.namespace_path.casefold()
        decoded = urllib.parse.unquote(path)
        if not decoded.casefold().startswith(prefix + "/"):
            raise _Fault(404, "ResourceNotFound", f"The Resource '{decoded}' was not found.")
        parts = decoded[len(prefix) + 1 :].split("/")
        kinds, names = parts[0::2], parts[1::2]
        allowed = (
            ["queues"],
            ["topics"],
            ["topics", "subscriptions"],
            ["topics", "subscriptions", "rules"],
        )
        if kinds not in allowed or any(not n for n in names):
            raise _Fault(404, "NotFound", f"No route for {method} {decoded}.")
        # Walk to the collection holding the last segment (parents must exist).
        collection = self.entities[kinds[0]]
        trail: list[str] = []
        for kind, name in zip(kinds[:-1], names, strict=False):
            parent = collection.get(name.casefold())
            if parent is None:
                raise _Fault(404, "NotFound", f"The {kind[:-1]} '{name}' was not found.")
            trail += [kind, parent.name]
            collection = parent.children
        kind = kinds[-1]
        if len(names) < len(kinds):  # a list route
            if method != "GET":
                raise _Fault(405, "MethodNotAllowed", f"{method} is not allowed on a list.")
            return 200, self._page(kind, trail, collection, query)
        name = names[-1]
        key = name.casefold()
        if method == "GET":
            if key not in collection:
                raise _Fault(404, "NotFound", f"The {kind[:-1]} '{name}' was not found.")
            return 200, self._render(kind, trail, collection[key])
        if method == "DELETE":
            return (200 if collection.pop(key, None) is not None else 204), None
        if method != "PUT":
            raise _Fault(405, "MethodNotAllowed", f"{method} is not allowed here.")
        if not _NAME[kind].match(name):
            raise _Fault(400, "BadRequest", f"The {kind[:-1]} name '{name}' is invalid.")
        if kind in ("queues", "topics"):
            other = "topics" if kind == "queues" else "queues"
            if key in self.entities[other]:
                raise _Fault(
                    409, "Conflict", f"'{name}' already exists as a {other[:-1]} in the namespace."
                )
        properties = self._properties(kind, body)
        existing = collection.get(key)
        if existing is not None:
            self._check_immutable(kind, existing, properties)
            existing.properties = properties
        else:
            existing = collection[key] = _Resource(name, properties)
            if kind == "subscriptions":
                for rule in new_subscription_rules():  # $Default: the SQL filter 1=1
                    assert not isinstance(rule.filter, CorrelationFilterSpec)
                    sql = {"sqlExpression": rule.filter.sql_expression}
                    default = {"filterType": "SqlFilter", "sqlFilter": sql}
                    existing.children[rule.name.casefold()] = _Resource(rule.name, default)
        return 200, self._render(kind, trail, existing)

    def _page(
        self, kind: str, trail: list[str], items: dict[str, _Resource], query: Mapping[str, str]
    ) -> dict[str, Any]:
        try:
            skip = int(query.get("$skip", "0"))
            top = int(query.get("$top", str(self.page_size)))
        except ValueError as exc:
            raise _Fault(400, "BadRequest", "$skip and $top must be integers.") from exc
        top = min(top, self.page_size)
        values = list(items.values())
        page: dict[str, Any] = {
            "value": [self._render(kind, trail, r) for r in values[skip : skip + top]]
        }
        if skip + top < len(values):
            path = "/".join([self.namespace_path, *trail, kind])
            page["nextLink"] = (
                f"{self.url}{urllib.parse.quote(path)}?api-version="
                f"{query.get('api-version')}&$skip={skip + top}&$top={top}"
            )
        return page

    def _render(self, kind: str, trail: list[str], resource: _Resource) -> dict[str, Any]:
        properties = {**_DEFAULTS.get(kind, {}), **resource.properties}
        if kind != "rules":
            stamp = "2026-01-01T00:00:00Z"
            properties.update(createdAt=stamp, updatedAt=stamp, accessedAt=stamp)
            if kind != "topics":
                properties["messageCount"] = 0
            if kind == "topics":
                properties["subscriptionCount"] = len(resource.children)
        return {
            "id": "/".join([self.namespace_path, *trail, kind, resource.name]),
            "name": resource.name,
            "type": _TYPES[kind],
            "location": "westeurope",
            "properties": properties,
        }

    def _properties(self, kind: str, body: bytes) -> dict[str, Any]:
        try:
            document = strict_json.loads(body or b"{}")
        except strict_json.NotStrictJsonError as exc:
            raise _Fault(400, "InvalidRequestContent", f"The body is not JSON: {exc}") from exc
        if not isinstance(document, dict):
            raise _Fault(400, "InvalidRequestContent", "The body must be a JSON object.")
        given = document.get("properties") or {}
        if not isinstance(given, dict):
            raise _Fault(400, "InvalidRequestContent", "'properties' must be an object.")
        if kind == "rules":
            return _rule_properties(given)
        known = _DEFAULTS[kind]
        properties: dict[str, Any] = {}
        for key, value in given.items():
            if key not in known:
                continue  # read-only or unknown: ARM ignores it
            if key in _DURATIONS:
                try:
                    duration = parse_duration(value)
                except ValueError as exc:
                    raise _Fault(400, "BadRequest", f"'{key}': {exc}") from exc
                properties[key] = NEVER if value == NEVER else format_duration(duration)
            elif type(value) is not type(known[key]):
                raise _Fault(400, "BadRequest", f"'{key}' must be a {type(known[key]).__name__}.")
            else:
                properties[key] = value
        return properties

    @staticmethod
    def _check_immutable(kind: str, existing: _Resource, properties: dict[str, Any]) -> None:
        for key in _IMMUTABLE.get(kind, ()):
            before = existing.properties.get(key, _DEFAULTS[kind][key])
            after = properties.get(key, _DEFAULTS[kind][key])
            if before != after:
                raise _Fault(
                    400,
                    "BadRequest",
                    f"The value for the '{key}' property of an existing {kind[:-1]} "
                    f"'{existing.name}' cannot be changed.",
                )


def _rule_properties(given: dict[str, Any]) -> dict[str, Any]:
    filter_type = given.get("filterType") or (
        "CorrelationFilter" if "correlationFilter" in given else "SqlFilter"
    )
    out: dict[str, Any] = {"filterType": filter_type}
    if filter_type == "SqlFilter":
        sql = (given.get("sqlFilter") or {"sqlExpression": "1=1"}).get("sqlExpression")
        if not isinstance(sql, str) or not sql.strip():
            raise _Fault(400, "BadRequest", "A SqlFilter needs a non-empty 'sqlExpression'.")
        out["sqlFilter"] = {"sqlExpression": sql, "compatibilityLevel": 20}
    elif filter_type == "CorrelationFilter":
        correlation = given.get("correlationFilter")
        if not isinstance(correlation, dict):
            raise _Fault(400, "BadRequest", "A CorrelationFilter needs 'correlationFilter'.")
        kept: dict[str, Any] = {}
        for key, value in correlation.items():
            if key == "properties":
                if not isinstance(value, dict) or not all(
                    isinstance(v, str) for v in value.values()
                ):
                    raise _Fault(400, "BadRequest", "'properties' must map names to strings.")
                kept[key] = value
            elif key in _CORRELATION_KEYS and value is not None:
                kept[key] = str(value)
        if not kept or kept == {"properties": {}}:
            raise _Fault(400, "BadRequest", "A CorrelationFilter needs at least one value.")
        out["correlationFilter"] = kept
    else:
        raise _Fault(400, "BadRequest", f"Unknown filterType '{filter_type}'.")
    action = given.get("action")
    if isinstance(action, dict) and action.get("sqlExpression"):
        out["action"] = {"sqlExpression": str(action["sqlExpression"]), "compatibilityLevel": 20}
    return out


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("arm fake %s - " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def _dispatch(self, method: str) -> None:
        try:
            length = int(self.headers.get("Content-Length", "0") or "0")
            body = self.rfile.read(length) if length > 0 else b""
            status, payload = self.server.fake.handle(
                method, self.path, body, self.headers.get("Authorization")
            )
        except Exception:  # never let a request kill the server thread
            logger.exception("ARM fake request %s %s failed", method, self.path)
            status, payload = 500, {"error": {"code": "InternalError", "message": "fake failed"}}
        data = json.dumps(payload).encode() if payload is not None else b""
        self.send_response(status, HTTPStatus(status).phrase)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-ms-request-id", "fake")
        self.end_headers()
        self.wfile.write(data)


class _Server(ThreadingHTTPServer):
    """A thread per connection; the TLS handshake happens there, not in the accept loop."""

    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], *, context: ssl.SSLContext, fake: ArmServiceBusFake
    ) -> None:
        super().__init__(address, _Handler)
        self.context = context
        self.fake = fake

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(30)
        try:
            tls = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            logger.debug("TLS handshake from %s failed: %s", client_address, exc)
            return
        try:
            _Handler(tls, client_address, self)
        finally:
            with contextlib.suppress(OSError):
                tls.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.debug("ARM fake connection from %s ended with an error", client_address)
