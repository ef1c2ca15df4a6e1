"""Keeps one received message's peek-lock alive while its handler works.

The SDK's ``AutoLockRenewer`` cannot be told to stop renewing one message, so a renewal already
on the wire when the pump settles that message fails on the service ("the lock was lost") and
the SDK logs that as an ERROR with a traceback, although nothing went wrong. A
:class:`LockKeeper` is stopped, and its renewal in flight awaited, before the message is settled.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from azure.core.exceptions import AzureError
from azure.servicebus import ServiceBusReceivedMessage
from azure.servicebus.aio import ServiceBusReceiver

RenewFailed = Callable[[ServiceBusReceivedMessage, Exception], Awaitable[None]]
"""Told when a renewal failed; the keeper stops renewing that message then."""

MIN_RENEW_EVERY = 0.1
"""Seconds between renewals at least, however short the entity's lock duration is."""

UNKNOWN_LOCK_RENEW_EVERY = 1.0
"""Seconds between renewals when the message does not say until when it is locked."""


class LockKeeper:
    """Renews ``message``'s lock at half of what is left of it, until :meth:`stop` or until
    ``max_renewal`` has passed since :meth:`start` (then the lock lapses and Service Bus
    redelivers the message)."""

    def __init__(
        self,
        receiver: ServiceBusReceiver,
        message: ServiceBusReceivedMessage,
        *,
        max_renewal: timedelta,
        on_failure: RenewFailed,
    ) -> None:
        self._receiver = receiver
        self._message = message
        self._max_renewal = max_renewal.total_seconds()
        self._on_failure = on_failure
        self._stopped = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.renewals = 0

    @property
    def running(self) -> bool:
        """Whether the keeper still renews (False once stopped, failed or past max_renewal)."""
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._keep(), name="floworch-lock-keeper")

    async def stop(self) -> None:
        """Stops renewing; returns once a renewal in flight has finished. Idempotent."""
        self._stopped.set()
        task, self._task = self._task, None
        if task is not None:
            # Shielded: a pump cancelled while stopping still must not settle under a renewal.
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(task)

    def _next_wait(self) -> float:
        locked_until = self._message.locked_until_utc
        if locked_until is None:
            return UNKNOWN_LOCK_RENEW_EVERY
        left = (locked_until - datetime.now(UTC)).total_seconds()
        return max(left / 2, MIN_RENEW_EVERY)

    async def _keep(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._max_renewal
        while True:
            wait = min(self._next_wait(), deadline - loop.time())
            if wait <= 0:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopped.wait(), wait)
            if self._stopped.is_set() or loop.time() >= deadline:
                return
            try:
                await self._receiver.renew_message_lock(self._message)
            except (AzureError, ValueError) as exc:
                # ValueError: the SDK's own "Management Operation error" for a lost lock.
                await self._on_failure(self._message, exc)
                return
            self.renewals += 1
