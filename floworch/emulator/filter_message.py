"""The message as subscription rules see it: system properties by Service Bus name, user properties.

The broker builds one :class:`FilterMessage` per published message; SQL actions mutate a copy.
"""

from __future__ import annotations

import copy as _copy
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from floworch.emulator.entities import PropertyValue

#: Service Bus SQL name of each system property (casefolded) -> attribute of FilterMessage.
SYSTEM_PROPERTY_ATTRIBUTES: dict[str, str] = {
    "messageid": "message_id",
    "correlationid": "correlation_id",
    "to": "to",
    "replyto": "reply_to",
    "label": "subject",
    "subject": "subject",
    "sessionid": "session_id",
    "replytosessionid": "reply_to_session_id",
    "contenttype": "content_type",
    "sequencenumber": "sequence_number",
    "enqueuedsequencenumber": "enqueued_sequence_number",
    "enqueuedtimeutc": "enqueued_time_utc",
    "scheduledenqueuetimeutc": "scheduled_enqueue_time_utc",
    "expiresatutc": "expires_at_utc",
    "timetolive": "time_to_live",
    "deliverycount": "delivery_count",
    "size": "size",
    "partitionkey": "partition_key",
    "deadlettersource": "dead_letter_source",
    "lockeduntilutc": "locked_until_utc",
    "locktoken": "lock_token",
}


@dataclass(kw_only=True)
class FilterMessage:
    """What rule filters and actions see of a message.

    System properties are attributes (``subject`` is the Service Bus ``Label``); ``properties``
    are the application (user) properties, which SQL rule actions mutate in place. Unknown
    values stay ``None``, which SQL treats as NULL.
    """

    message_id: str | None = None
    correlation_id: str | None = None
    to: str | None = None
    reply_to: str | None = None
    subject: str | None = None
    session_id: str | None = None
    reply_to_session_id: str | None = None
    content_type: str | None = None
    sequence_number: int | None = None
    enqueued_sequence_number: int | None = None
    enqueued_time_utc: datetime | None = None
    scheduled_enqueue_time_utc: datetime | None = None
    expires_at_utc: datetime | None = None
    time_to_live: timedelta | None = None
    delivery_count: int | None = 0
    size: int | None = None
    partition_key: str | None = None
    dead_letter_source: str | None = None
    locked_until_utc: datetime | None = None
    lock_token: str | None = None
    properties: dict[str, PropertyValue] = field(default_factory=dict)

    def system_property(self, name: str) -> PropertyValue:
        """The system property with this Service Bus name (case-insensitive), e.g. ``Label``.

        Raises:
            KeyError: when ``name`` is not a Service Bus system property.
        """
        return getattr(self, SYSTEM_PROPERTY_ATTRIBUTES[name.casefold()])  # type: ignore[no-any-return]

    def set_system_property(self, name: str, value: PropertyValue) -> None:
        """Set a system property by its Service Bus name (SQL actions may ``SET sys.To = ...``).

        Raises:
            KeyError: when ``name`` is not a Service Bus system property.
        """
        setattr(self, SYSTEM_PROPERTY_ATTRIBUTES[name.casefold()], value)

    def copy(self) -> FilterMessage:
        """An independent copy (its own ``properties`` dict) to apply one rule's action to."""
        clone = _copy.copy(self)
        clone.properties = dict(self.properties)
        return clone
