"""The public local Service Bus emulator: AMQP 1.0 broker plus HTTPS management API.

Example:
    >>> with ServiceBusEmulator(topology="topology/servicebus.json") as emulator:
    ...     client = ServiceBusClient.from_connection_string(emulator.connection_string)
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from proton.reactor import Container

from floworch.emulator.amqp_server import AmqpHandler
from floworch.emulator.broker import Broker
from floworch.emulator.entities import (
    EmulatorError,
    EntityRuntimeInfo,
    ManagementBackend,
    QueueSettings,
    RuleSettings,
    SubscriptionSettings,
    TopicSettings,
    Topology,
    load_topology,
)
from floworch.emulator.entity_registry import EntityRegistry
from floworch.emulator.management import ManagementServer

__all__ = ["ServiceBusEmulator"]

_T = TypeVar("_T")

DEFAULT_KEY_NAME = "RootManageSharedAccessKey"
DEFAULT_KEY = "SAS_KEY_VALUE"
#: Service Bus Premium's default; Standard allows 256 KiB.
DEFAULT_MAX_MESSAGE_SIZE = 1024 * 1024
_CALL_TIMEOUT = 30.0


class EmulatorNotRunning(EmulatorError):
    """The emulator was used before :meth:`ServiceBusEmulator.start` or after ``stop``."""


class ReactorBackend:
    """:class:`ManagementBackend` that runs each call on the reactor thread and waits for it.

    The broker's state belongs to the reactor thread alone, so the HTTPS management server's
    threads (and test code) come through here instead of touching the registry directly.
    """

    def __init__(self, registry: EntityRegistry, run: Callable[[Callable[[], Any]], Any]) -> None:
        self._registry = registry
        self._run = run

    def _call(self, fn: Callable[[], _T]) -> _T:
        result: _T = self._run(fn)
        return result

    def create_queue(self, settings: QueueSettings) -> QueueSettings:
        return self._call(lambda: self._registry.create_queue(settings))

    def get_queue(self, name: str) -> QueueSettings:
        return self._call(lambda: self._registry.get_queue(name))

    def update_queue(self, settings: QueueSettings) -> QueueSettings:
        return self._call(lambda: self._registry.update_queue(settings))

    def delete_queue(self, name: str) -> None:
        self._call(lambda: self._registry.delete_queue(name))

    def list_queues(self) -> Sequence[QueueSettings]:
        return self._call(lambda: list(self._registry.list_queues()))

    def get_queue_runtime_info(self, name: str) -> EntityRuntimeInfo:
        return self._call(lambda: self._registry.get_queue_runtime_info(name))

    def create_topic(self, settings: TopicSettings) -> TopicSettings:
        return self._call(lambda: self._registry.create_topic(settings))

    def get_topic(self, name: str) -> TopicSettings:
        return self._call(lambda: self._registry.get_topic(name))

    def update_topic(self, settings: TopicSettings) -> TopicSettings:
        return self._call(lambda: self._registry.update_topic(settings))

    def delete_topic(self, name: str) -> None:
        self._call(lambda: self._registry.delete_topic(name))

    def list_topics(self) -> Sequence[TopicSettings]:
        return self._call(lambda: list(self._registry.list_topics()))

    def get_topic_runtime_info(self, name: str) -> EntityRuntimeInfo:
        return self._call(lambda: self._registry.get_topic_runtime_info(name))

    def create_subscription(self, settings: SubscriptionSettings) -> SubscriptionSettings:
        return self._call(lambda: self._registry.create_subscription(settings))

    def get_subscription(self, topic_name: str, name: str) -> SubscriptionSettings:
        return self._call(lambda: self._registry.get_subscription(topic_name, name))

    def update_subscription(self, settings: SubscriptionSettings) -> SubscriptionSettings:
        return self._call(lambda: self._registry.update_subscription(settings))

    def delete_subscription(self, topic_name: str, name: str) -> None:
        self._call(lambda: self._registry.delete_subscription(topic_name, name))

    def list_subscriptions(self, topic_name: str) -> Sequence[SubscriptionSettings]:
        return self._call(lambda: list(self._registry.list_subscriptions(topic_name)))

    def get_subscription_runtime_info(self, topic_name: str, name: str) -> EntityRuntimeInfo:
        return self._call(lambda: self._registry.get_subscription_runtime_info(topic_name, name))

    def create_rule(self, settings: RuleSettings) -> RuleSettings:
        return self._call(lambda: self._registry.create_rule(settings))

    def get_rule(self, topic_name: str, subscription_name: str, name: str) -> RuleSettings:
        return self._call(lambda: self._registry.get_rule(topic_name, subscription_name, name))

    def update_rule(self, settings: RuleSettings) -> RuleSettings:
        return self._call(lambda: self._registry.update_rule(settings))

    def delete_rule(self, topic_name: str, subscription_name: str, name: str) -> None:
        self._call(lambda: self._registry.delete_rule(topic_name, subscription_name, name))

    def list_rules(self, topic_name: str, subscription_name: str) -> Sequence[RuleSettings]:
        return self._call(lambda: list(self._registry.list_rules(topic_name, subscription_name)))


class ServiceBusEmulator:
    """A local Azure Service Bus the real ``azure-servicebus`` SDK talks to over AMQP 1.0.

    The AMQP listener (plain TCP, ``UseDevelopmentEmulator=true``) and the HTTPS management API
    (self-signed certificate, see :attr:`ca_file`) each get their own port. All broker state lives
    on one reactor thread; everything else reaches it by injecting events.

    Args:
        topology: Entities to declare at start: a :class:`Topology`, a path to a topology JSON
            document, or its parsed mapping. ``None`` starts empty.
        host: Interface to listen on (loopback by default).
        port: AMQP port; 0 picks a free one. Never 5672 by default, which RabbitMQ often holds.
        management_port: HTTPS management port; 0 picks a free one.
        max_message_size: Largest accepted message (or batch) in bytes.
        shared_access_key_name: Key name in the connection strings.
        shared_access_key: Key in the connection strings. Management requests are always
            checked against it; AMQP tokens only with ``strict_auth``.
        strict_auth: Check shared access signatures as Service Bus does: on AMQP every
            ``put-token`` must be signed with the key and its ``sr`` must cover the audience,
            and a link is refused unless an accepted token covers its entity; on the management
            API the token's ``sr`` must also cover the requested URL.
    """

    def __init__(
        self,
        topology: Topology | Path | str | Mapping[str, Any] | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        management_port: int = 0,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        shared_access_key_name: str = DEFAULT_KEY_NAME,
        shared_access_key: str = DEFAULT_KEY,
        strict_auth: bool = False,
    ) -> None:
        if topology is None or isinstance(topology, Topology):
            self._topology = topology
        else:
            self._topology = load_topology(topology)
        self._host = host
        self._requested_port = port
        self._requested_management_port = management_port
        self._max_message_size = max_message_size
        self._key_name = shared_access_key_name
        self._key = shared_access_key
        self.strict_auth = strict_auth
        """Whether shared access signatures are checked as Service Bus does (see above)."""
        self._broker = Broker()
        self._handler: AmqpHandler | None = None
        self._thread: threading.Thread | None = None
        self._management: ManagementServer | None = None
        self._port: int | None = None
        self.backend: ManagementBackend = ReactorBackend(self._broker.registry, self.run_on_reactor)
        """Create, read, update and delete entities (thread-safe, runs on the reactor)."""

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> ServiceBusEmulator:
        """Bind both ports, start the reactor and the management server, declare the topology.

        Raises:
            OSError: when a port cannot be bound.
        """
        if self._thread is not None:
            raise RuntimeError("the emulator is already started")
        ready: concurrent.futures.Future[int] = concurrent.futures.Future()

        def on_ready(result: int | BaseException) -> None:
            if isinstance(result, BaseException):
                ready.set_exception(result)
            else:
                ready.set_result(result)

        self._handler = AmqpHandler(
            self._broker,
            host=self._host,
            port=self._requested_port,
            max_message_size=self._max_message_size,
            on_ready=on_ready,
            shared_access_keys={self._key_name: self._key},
            strict_auth=self.strict_auth,
        )
        container = Container(self._handler)
        self._thread = threading.Thread(
            target=self._run_reactor, args=(container,), name="floworch-sb-emulator", daemon=True
        )
        self._thread.start()
        try:
            self._port = ready.result(timeout=_CALL_TIMEOUT)
            self._management = ManagementServer(
                self.backend,
                self._host,
                self._requested_management_port,
                shared_access_keys={self._key_name: self._key},
                strict_auth=self.strict_auth,
            )
            self._management.start()
            if self._topology is not None:
                self._topology.apply(self.backend)
        except BaseException:
            self.stop()
            raise
        return self

    def _run_reactor(self, container: Container) -> None:
        try:
            container.run()
        finally:
            assert self._handler is not None
            self._handler.release_resources()

    def stop(self) -> None:
        """Close every connection, stop the reactor and the management server, join threads."""
        if self._management is not None:
            self._management.stop()
            self._management = None
        thread, handler = self._thread, self._handler
        if thread is not None and handler is not None:
            if thread.is_alive():
                with contextlib.suppress(RuntimeError):
                    handler.call_soon(handler.begin_shutdown)
            thread.join(timeout=_CALL_TIMEOUT)
        self._thread = None
        self._port = None

    def __enter__(self) -> ServiceBusEmulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def run_on_reactor(self, fn: Callable[[], _T]) -> _T:
        """Run ``fn`` on the reactor thread and return its result (or raise its exception)."""
        handler, thread = self._handler, self._thread
        if handler is None or thread is None or not thread.is_alive():
            raise EmulatorNotRunning("the emulator is not running; call start() first")
        if threading.current_thread() is thread:
            return fn()
        future: concurrent.futures.Future[_T] = concurrent.futures.Future()

        def call() -> None:
            try:
                future.set_result(fn())
            except BaseException as exc:
                future.set_exception(exc)

        handler.call_soon(call)
        return future.result(timeout=_CALL_TIMEOUT)

    # --- addresses ------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The AMQP port (after :meth:`start`)."""
        if self._port is None:
            raise EmulatorNotRunning("the emulator is not running; call start() first")
        return self._port

    @property
    def management_port(self) -> int:
        """The HTTPS management port (after :meth:`start`)."""
        if self._management is None:
            raise EmulatorNotRunning("the emulator is not running; call start() first")
        return self._management.port

    @property
    def ca_file(self) -> Path:
        """The management server's self-signed certificate, for ``connection_verify``."""
        if self._management is None:
            raise EmulatorNotRunning("the emulator is not running; call start() first")
        return self._management.ca_file

    def _endpoint(self, port: int) -> str:
        host = "127.0.0.1" if self._host in ("", "0.0.0.0") else self._host
        return (
            f"Endpoint=sb://{host}:{port};SharedAccessKeyName={self._key_name};"
            f"SharedAccessKey={self._key};UseDevelopmentEmulator=true"
        )

    @property
    def connection_string(self) -> str:
        """Connection string for ``ServiceBusClient`` (AMQP data plane)."""
        return self._endpoint(self.port)

    @property
    def management_connection_string(self) -> str:
        """Connection string for ``ServiceBusAdministrationClient`` (pass ``ca_file`` as
        ``connection_verify``): the admin client uses the endpoint's port for HTTPS."""
        return self._endpoint(self.management_port)
