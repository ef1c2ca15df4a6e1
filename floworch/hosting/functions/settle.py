"""From a received message to a settled one: the handlers' verdict, retried in place while it
says ``Retry`` and the hold budget lasts, then mapped onto the binding's settlement.

- Auto-complete (:class:`~floworch.hosting.functions.settings.Settlement` ``AUTO``):
  ``Complete`` returns (the host completes the message); ``Retry`` raises
  :class:`MessageRetryLater` (the host abandons it: Service Bus redelivers it at once);
  ``DeadLetter`` raises :class:`MessageRejected`, since auto-complete has no dead-letter: Service
  Bus redelivers it until its max delivery count and then dead-letters it as
  ``MaxDeliveryCountExceeded``; the reason is in the exception, which the host logs.
- SDK-type binding (``ACTIONS``): ``complete``, ``abandon`` or ``deadletter`` with the reason and
  description, like the worker's pump. A settlement that fails is logged: the lock lapses and
  Service Bus redelivers the message, which the step claim makes harmless.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, Protocol

from floworch.engine.consumer import (
    Complete,
    DeadLetter,
    Delivery,
    Retry,
    RetryPolicy,
    Verdict,
    failure_verdict,
)
from floworch.errors import FlowError
from floworch.hosting.functions.inbound import Inbound

log = logging.getLogger("floworch.hosting.functions")

Decide = Callable[[Delivery], Awaitable[Verdict]]


class MessageRetryLater(FlowError):
    """Raised by an auto-complete function to have its message abandoned (redelivered)."""


class MessageRejected(FlowError):
    """Raised by an auto-complete function for a message that can never succeed; Service Bus
    dead-letters it once its max delivery count is reached.

    Attributes:
        reason: the dead-letter reason the step consumer gave.
        description: what was wrong.
    """

    def __init__(self, reason: str, description: str) -> None:
        super().__init__(f"{reason}: {description}")
        self.reason = reason
        self.description = description


class MessageActions(Protocol):
    """The settlement client of the SDK-type binding (``ServiceBusMessageActions``; its
    methods are synchronous gRPC calls to the host)."""

    def complete(self, message: Any) -> None: ...

    def abandon(self, message: Any) -> None: ...

    def deadletter(
        self,
        message: Any,
        deadletter_reason: str | None = None,
        deadletter_error_description: str | None = None,
    ) -> None: ...


async def decide(
    inbound: Inbound,
    decide_once: Decide,
    *,
    hold: timedelta,
    max_delivery_count: int | None,
    policy: RetryPolicy,
    what: str,
    on_hold: Callable[[], None] | None = None,
) -> Verdict:
    """Asks ``decide_once`` for a verdict; while it is ``Retry`` and the hold budget allows the
    wait, waits and asks again (the message stays locked: the host renews the lock);
    ``on_hold`` is called before each wait."""
    loop = asyncio.get_running_loop()
    received = loop.time()
    budget = hold.total_seconds()
    first_failure: float | None = None
    attempt = 1
    while True:
        now = loop.time()
        delivery = Delivery(
            inbound.message_id,
            delivery_count=inbound.delivery_count,
            max_delivery_count=max_delivery_count,
            enqueued_at=inbound.enqueued_time_utc,
            attempt=attempt,
            failing_for=timedelta(seconds=0 if first_failure is None else now - first_failure),
            hold_remaining=timedelta(seconds=max(budget - (now - received), 0)),
        )
        try:
            verdict = await decide_once(delivery)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # handlers return verdicts; this is the last resort
            log.exception("handling %s %s failed", what, inbound.message_id)
            verdict = failure_verdict(exc, delivery, policy)
        if not isinstance(verdict, Retry):
            return verdict
        wait = verdict.after.total_seconds()
        if wait > budget - (loop.time() - received):
            return verdict  # the budget is spent: give the message back
        if first_failure is None:
            first_failure = now
        log.warning(
            "%s %s: %s; trying again in %.1f s (the message stays locked)",
            what,
            inbound.message_id,
            verdict.why,
            wait,
        )
        if on_hold is not None:
            on_hold()
        await asyncio.sleep(wait)
        attempt += 1


def settle_auto(verdict: Verdict, inbound: Inbound, what: str) -> None:
    """Auto-complete: return to complete, raise to abandon (see the module docstring)."""
    if isinstance(verdict, Complete):
        return
    if isinstance(verdict, Retry):
        log.warning(
            "giving %s %s back to Service Bus (delivery %d): %s",
            what,
            inbound.message_id,
            inbound.delivery_count,
            verdict.why,
        )
        raise MessageRetryLater(
            f"{what} {inbound.message_id}: {verdict.why}; Service Bus redelivers it"
        )
    log.error(
        "%s %s cannot succeed (%s: %s); auto-complete cannot dead-letter it, so Service Bus "
        "redelivers it until its max delivery count and then dead-letters it "
        "(delivery %d)",
        what,
        inbound.message_id,
        verdict.reason,
        verdict.description,
        inbound.delivery_count,
    )
    raise MessageRejected(verdict.reason, verdict.description)


async def settle_actions(
    verdict: Verdict, message: Any, actions: MessageActions, inbound: Inbound, what: str
) -> bool:
    """SDK-type binding: settle exactly; returns whether the message was dead-lettered."""
    try:
        if isinstance(verdict, Complete):
            await asyncio.to_thread(actions.complete, message)
            return False
        if isinstance(verdict, Retry):
            log.warning(
                "abandoning %s %s (delivery %d): %s",
                what,
                inbound.message_id,
                inbound.delivery_count,
                verdict.why,
            )
            await asyncio.to_thread(actions.abandon, message)
            return False
        assert isinstance(verdict, DeadLetter)
        log.error(
            "dead-lettering %s %s: %s: %s",
            what,
            inbound.message_id,
            verdict.reason,
            verdict.description,
        )
        await asyncio.to_thread(
            actions.deadletter,
            message,
            deadletter_reason=verdict.reason,
            deadletter_error_description=verdict.description[:1024],
        )
        return True
    except Exception as exc:  # SettlementError: the lock lapses, Service Bus redelivers
        log.warning(
            "settling %s %s failed (%s); Service Bus redelivers it when its lock lapses",
            what,
            inbound.message_id,
            exc,
        )
        return False
