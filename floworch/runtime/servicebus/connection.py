"""Opening the one long-lived ``ServiceBusClient`` a process uses (opening costs ~0.5 s, so
senders and receivers are created from it once and kept)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from azure.servicebus.aio import ServiceBusClient

from floworch.runtime.servicebus.config import SendRetry, ServiceBusConnection


@dataclass
class ClientHandle:
    """The client and, with managed identity, the credential it borrows; close both together."""

    client: ServiceBusClient
    credential: Any | None = None

    async def close(self) -> None:
        await self.client.close()
        if self.credential is not None:
            await self.credential.close()


def open_client(connection: ServiceBusConnection, retry: SendRetry | None = None) -> ClientHandle:
    """A client for the namespace, with exponential retry of transient failures."""
    retry = retry or SendRetry()
    options: dict[str, Any] = {
        "retry_total": retry.attempts,
        "retry_backoff_factor": retry.backoff_factor,
        "retry_backoff_max": retry.backoff_max,
        "retry_mode": "exponential",
    }
    if connection.connection_string:
        return ClientHandle(
            ServiceBusClient.from_connection_string(connection.connection_string, **options)
        )
    from azure.identity.aio import DefaultAzureCredential

    assert connection.namespace is not None
    credential = DefaultAzureCredential()
    return ClientHandle(ServiceBusClient(connection.namespace, credential, **options), credential)
