"""Options of the Service Bus runtime (the worker host turns flags and ``FLOWORCH_*`` variables
into one of these; nothing here reads the environment)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from floworch.runtime.servicebus.names import (
    DEFAULT_CRON_QUEUE,
    DEFAULT_STEPS_TOPIC,
    DEFAULT_TRIGGERS_TOPIC,
)


@dataclass(frozen=True)
class ServiceBusConnection:
    """Where the namespace is and how to authenticate.

    Exactly one of ``connection_string`` (shared access key; also the local emulator) or
    ``namespace`` (fully qualified, e.g. ``myns.servicebus.windows.net``, authenticated with
    ``DefaultAzureCredential``: managed identity in Azure, the developer's login locally).
    """

    connection_string: str | None = None
    namespace: str | None = None

    def __post_init__(self) -> None:
        if bool(self.connection_string) == bool(self.namespace):
            raise ValueError(
                "give exactly one of a Service Bus connection string "
                "(FLOWORCH_SERVICEBUS_CONNECTION / --connection) or a fully qualified namespace "
                "(FLOWORCH_SERVICEBUS_NAMESPACE / --namespace)"
            )

    def describe(self) -> str:
        """The endpoint without any secret, for logs and errors."""
        if self.namespace:
            return f"{self.namespace} (DefaultAzureCredential)"
        assert self.connection_string is not None
        for part in self.connection_string.split(";"):
            if part.lower().startswith("endpoint="):
                return part.split("=", 1)[1]
        return "(connection string without Endpoint)"


@dataclass(frozen=True)
class SendRetry:
    """How sends retry transient failures (the SDK's exponential back-off)."""

    attempts: int = 3
    backoff_factor: float = 0.2
    backoff_max: float = 10.0


@dataclass(frozen=True)
class ServiceBusSettings:
    """Entity names and receive behaviour of the Service Bus runtime.

    Attributes:
        steps_topic: the topic step messages travel on.
        cron_queue: the queue of self-perpetuating cron ticks.
        triggers_topic: the topic of run-starting messages from outside (a subscription per
            flow routes them by ``FlowId``; ``unrouted`` catches the rest).
        concurrency: messages processed at once per subscription (and per queue).
        prefetch: messages the receiver fetches ahead (0: none).
        max_lock_renewal: how long a message lock is renewed while its step runs.
        receive_wait: longest wait of one receive call (bounds how fast a stop is noticed).
        retry_in_place: how long a message whose handling hit an infrastructure failure
            (database down) is retried, with back-off, while it stays locked before it is
            abandoned; keeps a short outage from using up the max delivery count.
        max_delivery_count: the max delivery count of the entities the worker receives from
            (the topology's default is 10), so that the last delivery of a message that keeps
            failing is dead-lettered with its real reason rather than Service Bus's
            ``MaxDeliveryCountExceeded``; None when unknown.
        retry: transient send failure retries.
    """

    steps_topic: str = DEFAULT_STEPS_TOPIC
    cron_queue: str = DEFAULT_CRON_QUEUE
    triggers_topic: str = DEFAULT_TRIGGERS_TOPIC
    concurrency: int = 8
    prefetch: int = 0
    max_lock_renewal: timedelta = timedelta(minutes=5)
    receive_wait: float = 1.0
    retry_in_place: timedelta = timedelta(seconds=60)
    max_delivery_count: int | None = 10
    retry: SendRetry = field(default_factory=SendRetry)

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, not {self.concurrency}")
        if self.prefetch < 0:
            raise ValueError(f"prefetch must be 0 or more, not {self.prefetch}")
        if self.receive_wait <= 0:
            raise ValueError("receive_wait must be positive")
