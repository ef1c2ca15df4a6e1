"""A received message as the trigger functions see it, whichever binding delivered it.

With auto-complete the worker hands over an ``azure.functions.ServiceBusMessage`` (its
``delivery_count`` is the host's, counting from 1); with the SDK-type binding an
``azure.servicebus.ServiceBusReceivedMessage`` decoded from the raw AMQP message (its
``delivery_count`` is the AMQP header's, counting earlier deliveries from 0, as on the worker).
:class:`Inbound` holds what the step consumer, the cron hub and the trigger handler read:
message id, body bytes, application properties, delivery count and enqueued time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class Inbound:
    """One delivery of a message.

    Attributes:
        message_id: the message id ('' when the sender gave none).
        body: the raw body.
        application_properties: keys and values as delivered (text or bytes).
        delivery_count: deliveries so far, this one included (1 the first time).
        enqueued_time_utc: when the message was enqueued, when known.
    """

    message_id: str
    body: bytes
    application_properties: Mapping[str | bytes, Any] = field(default_factory=dict)
    delivery_count: int = 1
    enqueued_time_utc: datetime | None = None

    @classmethod
    def from_functions(cls, message: Any) -> Inbound:
        """From an ``azure.functions.ServiceBusMessage`` (auto-complete binding)."""
        return cls(
            message_id=str(getattr(message, "message_id", None) or ""),
            body=bytes(message.get_body() or b""),
            application_properties=dict(getattr(message, "application_properties", None) or {}),
            delivery_count=max(int(getattr(message, "delivery_count", None) or 1), 1),
            enqueued_time_utc=getattr(message, "enqueued_time_utc", None),
        )

    @classmethod
    def from_sdk(cls, message: Any) -> Inbound:
        """From an ``azure.servicebus.ServiceBusReceivedMessage`` (SDK-type binding)."""
        from floworch.runtime.servicebus.messages import body_bytes

        return cls(
            message_id=str(message.message_id or ""),
            body=body_bytes(message),
            application_properties=dict(message.application_properties or {}),
            # The AMQP header counts earlier deliveries (0 the first time).
            delivery_count=int(message.delivery_count or 0) + 1,
            enqueued_time_utc=message.enqueued_time_utc,
        )
