"""Per-link and per-connection state of the AMQP server, and the AMQP error conditions it uses.

Kept apart from :mod:`floworch.emulator.amqp_server` so the reactor handler reads as event
handling only.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from proton import Condition, symbol

from floworch.emulator.broker import SendTarget
from floworch.emulator.message_store import EntityStore

LOCK_LOST = "com.microsoft:message-lock-lost"
NOT_FOUND = "amqp:not-found"
DECODE_ERROR = "amqp:decode-error"
INTERNAL_ERROR = "amqp:internal-error"
NOT_IMPLEMENTED = "amqp:not-implemented"
UNAUTHORIZED = "amqp:unauthorized-access"
MESSAGE_SIZE_EXCEEDED = "amqp:link:message-size-exceeded"
SESSION_FILTER = symbol("com.microsoft:session-filter")

#: Credit kept open on links clients send on; topped up as deliveries arrive.
INCOMING_WINDOW = 1000


class LinkRole(enum.Enum):
    """What a link attached to the emulator is for."""

    SEND = "send"  # a client sender: messages in
    CONSUME = "consume"  # a client receiver: deliveries out
    REQUEST = "request"  # $cbs or $management requests in
    REPLY = "reply"  # $cbs or $management responses out


@dataclass(eq=False)
class LinkContext:
    """The emulator's state for one link (stored on the proton link object)."""

    role: LinkRole
    node: str
    target: SendTarget | None = None
    store: EntityStore | None = None
    peek_lock: bool = True


@dataclass(eq=False)
class ConnectionContext:
    """Reply links and replies waiting for credit, per request node, on one connection, and
    the entity paths its accepted ``put-token`` requests authorise (checked with strict auth)."""

    reply_links: dict[str, Any] = field(default_factory=dict)
    pending: dict[str, list[bytes]] = field(default_factory=dict)
    authorized: set[str] = field(default_factory=set)


def node_of(address: str | None) -> str:
    """The entity path of a link address (``amqps://host:port/T/Subscriptions/S`` -> that path)."""
    if not address:
        return ""
    if "://" in address:
        rest = address.split("://", 1)[1]
        address = rest.split("/", 1)[1] if "/" in rest else ""
    return address.strip("/")


def error_condition(name: str, description: str) -> Condition:
    # The SDK indexes error[2] (info) unconditionally when a send is rejected, and proton omits
    # an empty info field, so always send a non-empty info map.
    return Condition(name, description, {symbol("description"): description})


def has_session_filter(terminus: Any) -> bool:
    data = terminus.filter
    data.rewind()
    if data.next() is None:
        return False
    filters = data.get_object()
    return isinstance(filters, dict) and any(str(k) == SESSION_FILTER for k in filters)
