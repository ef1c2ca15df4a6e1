"""Which entity settings the topology manager reads and writes through the Azure SDKs, and the
SDK's name for each (the admin client and ARM models share them)."""

from __future__ import annotations

#: Model attribute -> attribute of the SDK's properties classes, where they differ.
SDK_NAMES = {"default_message_ttl": "default_message_time_to_live"}
QUEUE_ATTRS = (
    "lock_duration",
    "max_delivery_count",
    "default_message_ttl",
    "dead_lettering_on_message_expiration",
    "requires_duplicate_detection",
    "duplicate_detection_history_time_window",
    "requires_session",
)
TOPIC_ATTRS = (
    "default_message_ttl",
    "requires_duplicate_detection",
    "duplicate_detection_history_time_window",
)
SUBSCRIPTION_ATTRS = (
    "lock_duration",
    "max_delivery_count",
    "default_message_ttl",
    "dead_lettering_on_message_expiration",
    "requires_session",
)
