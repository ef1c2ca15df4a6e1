"""The messages of one queue or subscription (or its dead-letter sub-queue), with peek-lock.

Everything here runs on the reactor thread and takes the current time as epoch milliseconds, so
the store needs no locks and tests can drive it with a fake clock. Work that must happen later
(lock expiry, TTL expiry) is registered on a shared :class:`TimerQueue` that the reactor fires.
"""

from __future__ import annotations

import heapq
import itertools
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from proton import timestamp

from floworch.emulator.amqp_message import (
    X_DEADLETTER_SOURCE,
    X_ENQUEUED_TIME,
    X_LOCKED_UNTIL,
    X_MESSAGE_STATE,
    X_SEQUENCE_NUMBER,
    AmqpMessage,
)

MAX_DELIVERY_COUNT_REASON = "MaxDeliveryCountExceeded"
MAX_DELIVERY_COUNT_DESCRIPTION = "Message could not be consumed after {count} delivery attempts."
TTL_EXPIRED_REASON = "TTLExpiredException"
TTL_EXPIRED_DESCRIPTION = "The message expired and was dead lettered."
DEAD_LETTER_REASON = "DeadLetterReason"
DEAD_LETTER_DESCRIPTION = "DeadLetterErrorDescription"

# x-opt-message-state values the SDK maps to ServiceBusMessageState.
STATE_ACTIVE, STATE_DEFERRED, STATE_SCHEDULED = 0, 1, 2


class TimerQueue:
    """Callbacks due at epoch-millisecond deadlines; the reactor runs the due ones.

    Entries are never removed: a callback checks, when it fires, whether it still applies. That
    keeps lock and expiry bookkeeping O(log n) without cancellation handles.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, Callable[[int], None]]] = []
        self._order = itertools.count()

    def at(self, when_ms: int, callback: Callable[[int], None]) -> None:
        """Run ``callback(now_ms)`` once ``when_ms`` has passed."""
        heapq.heappush(self._heap, (when_ms, next(self._order), callback))

    def next_due(self) -> int | None:
        """The earliest deadline, or ``None`` when nothing is pending."""
        return self._heap[0][0] if self._heap else None

    def run_due(self, now_ms: int) -> None:
        """Run every callback whose deadline is at or before ``now_ms``."""
        while self._heap and self._heap[0][0] <= now_ms:
            _, _, callback = heapq.heappop(self._heap)
            callback(now_ms)


@dataclass(slots=True, eq=False)
class StoredMessage:
    """A message held by one store, with its delivery state."""

    sequence_number: int
    message: AmqpMessage
    enqueued_ms: int
    expires_ms: int | None = None
    delivery_count: int = 0
    deferred: bool = False
    lock_token: uuid.UUID | None = None
    locked_until_ms: int = 0
    dead_letter_source: str | None = None

    def annotations(self, *, locked: bool) -> dict[Any, Any]:
        """The broker's annotations for a delivery or a peek of this message."""
        values: dict[Any, Any] = {
            X_SEQUENCE_NUMBER: self.sequence_number,
            X_ENQUEUED_TIME: timestamp(self.enqueued_ms),
            X_MESSAGE_STATE: STATE_DEFERRED if self.deferred else STATE_ACTIVE,
        }
        if locked:
            values[X_LOCKED_UNTIL] = timestamp(self.locked_until_ms)
        if self.dead_letter_source is not None:
            values[X_DEADLETTER_SOURCE] = self.dead_letter_source
        return values


@dataclass(frozen=True, kw_only=True)
class StorePolicy:
    """The entity settings a store applies (read from the queue or subscription settings)."""

    lock_duration_ms: int = 60_000
    max_delivery_count: int = 10
    default_ttl_ms: int | None = None
    dead_letter_on_expiration: bool = False


class LockLost(Exception):
    """The lock token is unknown, was settled already or has expired."""


class EntityStore:
    """Messages of a queue, a subscription or a ``$DeadLetterQueue``, with peek-lock semantics.

    Args:
        path: The entity path as clients address it (``orders``, ``t/Subscriptions/s``).
        policy: Lock duration, max delivery count and TTL rules.
        timers: Where lock and TTL deadlines are registered.
        on_available: Called when messages may have become available to receivers.
        dead_letter: The ``$DeadLetterQueue`` store; ``None`` for a dead-letter store itself.
    """

    def __init__(
        self,
        path: str,
        policy: StorePolicy,
        timers: TimerQueue,
        on_available: Callable[[EntityStore], None],
        dead_letter: EntityStore | None = None,
    ) -> None:
        self.path = path
        self.policy = policy
        self.dead_letter_store = dead_letter
        self._timers = timers
        self._on_available = on_available
        self._messages: dict[int, StoredMessage] = {}
        self._ready: list[int] = []
        self._locks: dict[uuid.UUID, StoredMessage] = {}
        self.size_in_bytes = 0

    # --- counts ---------------------------------------------------------------------------

    @property
    def message_count(self) -> int:
        """Messages held: available, locked and deferred."""
        return len(self._messages)

    @property
    def dead_letter_count(self) -> int:
        """Messages in the dead-letter sub-queue."""
        return 0 if self.dead_letter_store is None else self.dead_letter_store.message_count

    def messages(self) -> Iterator[StoredMessage]:
        """Every message held, in no particular order."""
        return iter(self._messages.values())

    # --- enqueue and delivery -------------------------------------------------------------

    def enqueue(self, stored: StoredMessage, now_ms: int) -> None:
        """Add a message and make it available; its TTL starts at its enqueue time."""
        if self.dead_letter_store is not None:
            ttls = [t for t in (stored.message.ttl_ms, self.policy.default_ttl_ms) if t]
            if ttls:
                stored.expires_ms = stored.enqueued_ms + min(ttls)
                self._timers.at(stored.expires_ms, lambda now: self._expire_if_due(stored, now))
        self._messages[stored.sequence_number] = stored
        self.size_in_bytes += stored.message.size
        heapq.heappush(self._ready, stored.sequence_number)
        self._on_available(self)

    def has_available(self) -> bool:
        """Whether a receive might find a message (may be a false positive, never a false no)."""
        return bool(self._ready)

    def take(self, now_ms: int, *, peek_lock: bool) -> tuple[StoredMessage, int] | None:
        """The next available message and the delivery count to send with it.

        In peek-lock mode the message is locked for the lock duration; otherwise it is removed.
        """
        while self._ready:
            seq = heapq.heappop(self._ready)
            stored = self._messages.get(seq)
            if stored is None or stored.deferred or stored.lock_token is not None:
                continue  # stale heap entry: the message was settled, deferred or is locked
            if stored.expires_ms is not None and stored.expires_ms <= now_ms:
                self._expire(stored, now_ms)
                continue
            count = stored.delivery_count
            stored.delivery_count += 1
            if peek_lock:
                self._lock(stored, now_ms)
            else:
                self._remove(stored)
            return stored, count
        return None

    def _lock(self, stored: StoredMessage, now_ms: int) -> uuid.UUID:
        token = uuid.uuid4()
        stored.lock_token = token
        stored.locked_until_ms = now_ms + self.policy.lock_duration_ms
        self._locks[token] = stored
        self._timers.at(stored.locked_until_ms, lambda now: self._lock_expired(stored, token, now))
        return token

    def _lock_expired(self, stored: StoredMessage, token: uuid.UUID, now_ms: int) -> None:
        if stored.lock_token != token or stored.locked_until_ms > now_ms:
            return  # settled, or renewed (the renewal registered its own deadline)
        self._unlock(stored)
        self._return(stored, now_ms)

    # --- settlement -----------------------------------------------------------------------

    def locked(self, token: uuid.UUID, now_ms: int) -> StoredMessage:
        """The message locked under ``token``.

        Raises:
            LockLost: when the token is unknown, settled or expired.
        """
        stored = self._locks.get(token)
        if stored is None:
            raise LockLost(f"the lock {token} is not held on {self.path}")
        if stored.locked_until_ms <= now_ms:
            self._lock_expired(stored, token, now_ms)
            raise LockLost(f"the lock {token} on {self.path} expired")
        return stored

    def complete(self, token: uuid.UUID, now_ms: int) -> None:
        """Remove the locked message. Raises :class:`LockLost`."""
        stored = self.locked(token, now_ms)
        self._unlock(stored)
        self._remove(stored)

    def abandon(self, token: uuid.UUID, now_ms: int) -> None:
        """Unlock the message for redelivery (or dead-letter it past max delivery count)."""
        stored = self.locked(token, now_ms)
        self._unlock(stored)
        self._return(stored, now_ms)

    def release(self, token: uuid.UUID, now_ms: int) -> None:
        """Unlock a message the client never saw (released on link close): no delivery counted."""
        stored = self._locks.get(token)
        if stored is None:
            return
        self._unlock(stored)
        stored.delivery_count = max(0, stored.delivery_count - 1)
        self._return(stored, now_ms)

    def defer(self, token: uuid.UUID, now_ms: int) -> None:
        """Set the message aside; only receive-by-sequence-number returns it."""
        stored = self.locked(token, now_ms)
        self._unlock(stored)
        stored.deferred = True

    def dead_letter(
        self, token: uuid.UUID, now_ms: int, reason: str | None, description: str | None
    ) -> None:
        """Move the locked message to the dead-letter sub-queue with reason and description."""
        stored = self.locked(token, now_ms)
        self._unlock(stored)
        self._move_to_dead_letter(stored, now_ms, reason, description)

    def renew(self, token: uuid.UUID, now_ms: int) -> int:
        """Extend the lock by the lock duration; returns the new locked-until (epoch ms)."""
        stored = self.locked(token, now_ms)
        stored.locked_until_ms = now_ms + self.policy.lock_duration_ms
        self._timers.at(stored.locked_until_ms, lambda now: self._lock_expired(stored, token, now))
        return stored.locked_until_ms

    # --- management reads -----------------------------------------------------------------

    def peek(self, from_sequence_number: int, count: int) -> list[StoredMessage]:
        """Up to ``count`` messages from ``from_sequence_number`` on, in sequence order."""
        seqs = sorted(s for s in self._messages if s >= from_sequence_number)[: max(count, 0)]
        return [self._messages[s] for s in seqs]

    def take_deferred(
        self, sequence_numbers: list[int], now_ms: int, *, peek_lock: bool
    ) -> list[tuple[StoredMessage, int]]:
        """Deferred messages by sequence number, locked (or removed in receive-and-delete).

        Raises:
            KeyError: naming the first sequence number that is not a deferred message here.
        """
        found = []
        for seq in sequence_numbers:
            stored = self._messages.get(seq)
            if stored is None or not stored.deferred or stored.lock_token is not None:
                raise KeyError(seq)
            found.append(stored)
        taken = []
        for stored in found:
            count = stored.delivery_count
            stored.delivery_count += 1
            if peek_lock:
                self._lock(stored, now_ms)
            else:
                self._remove(stored)
            taken.append((stored, count))
        return taken

    def purge(self) -> None:
        """Drop every message (the entity was deleted)."""
        self._messages.clear()
        self._ready.clear()
        self._locks.clear()
        self.size_in_bytes = 0

    # --- internals ------------------------------------------------------------------------

    def _unlock(self, stored: StoredMessage) -> None:
        if stored.lock_token is not None:
            self._locks.pop(stored.lock_token, None)
        stored.lock_token = None
        stored.locked_until_ms = 0

    def _remove(self, stored: StoredMessage) -> None:
        if self._messages.pop(stored.sequence_number, None) is not None:
            self.size_in_bytes -= stored.message.size

    def _return(self, stored: StoredMessage, now_ms: int) -> None:
        """Put an unlocked message back, unless it is expired or out of delivery attempts."""
        if stored.deferred:
            return
        if stored.expires_ms is not None and stored.expires_ms <= now_ms:
            self._expire(stored, now_ms)
            return
        limit = self.policy.max_delivery_count
        if self.dead_letter_store is not None and stored.delivery_count >= limit:
            self._move_to_dead_letter(
                stored,
                now_ms,
                MAX_DELIVERY_COUNT_REASON,
                MAX_DELIVERY_COUNT_DESCRIPTION.format(count=stored.delivery_count),
            )
            return
        heapq.heappush(self._ready, stored.sequence_number)
        self._on_available(self)

    def _expire_if_due(self, stored: StoredMessage, now_ms: int) -> None:
        if self._messages.get(stored.sequence_number) is not stored:
            return
        if stored.lock_token is not None:
            return  # a locked message expires when its lock ends (see _return)
        self._expire(stored, now_ms)

    def _expire(self, stored: StoredMessage, now_ms: int) -> None:
        if self.policy.dead_letter_on_expiration:
            self._move_to_dead_letter(stored, now_ms, TTL_EXPIRED_REASON, TTL_EXPIRED_DESCRIPTION)
        else:
            self._remove(stored)

    def _move_to_dead_letter(
        self, stored: StoredMessage, now_ms: int, reason: str | None, description: str | None
    ) -> None:
        self._remove(stored)
        target = self.dead_letter_store
        if target is None:
            # Service Bus cannot dead-letter out of a dead-letter queue; the message stays.
            self._messages[stored.sequence_number] = stored
            self.size_in_bytes += stored.message.size
            heapq.heappush(self._ready, stored.sequence_number)
            self._on_available(self)
            return
        props = dict(stored.message.application_properties)
        if reason is not None:
            props[DEAD_LETTER_REASON] = reason
        if description is not None:
            props[DEAD_LETTER_DESCRIPTION] = description
        moved = StoredMessage(
            sequence_number=stored.sequence_number,
            message=stored.message.with_application_properties(props),
            enqueued_ms=stored.enqueued_ms,
            delivery_count=stored.delivery_count,
        )
        target.enqueue(moved, now_ms)
